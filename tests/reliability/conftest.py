"""Faults with real processes: the e2e Stack (``taskflow-api`` + ``taskflow-worker`` subprocesses
over a database and queue of their own), plus the ``rel_tasks`` task types that count executions."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from taskcore.store import create_pool
from tests.e2e.conftest import Stack, free_port, provision
from tests.e2e.test_redis_restart import OwnRedis, redis_server_binary

REL_DIR = Path(__file__).resolve().parent

# Each execution of a ``rel.record`` handler (tests/reliability/rel_tasks.py) is a row here.
EXECUTIONS_TABLE = """CREATE TABLE executions (
    task_id uuid NOT NULL, attempt integer NOT NULL, pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp())"""


def reliability_env(env: dict[str, str]) -> dict[str, str]:
    """Add the rel_tasks module and where its executions go to a provisioned environment."""
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(REL_DIR)])
    env["TASKFLOW_TASK_MODULES"] = f"{env['TASKFLOW_TASK_MODULES']},rel_tasks"
    env["REL_EXECUTIONS_DATABASE_URL"] = env["TASKFLOW_DATABASE_URL"]
    return env


@pytest.fixture
async def rel_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """An API over a database and queue of its own and no worker yet (``start_worker``)."""
    async with provision("taskflow_rel") as env:
        reliability_env(env)
        pool = await create_pool(env["TASKFLOW_DATABASE_URL"], max_size=1)
        try:
            await pool.execute(EXECUTIONS_TABLE)
        finally:
            await pool.close()
        live = Stack(url=f"http://127.0.0.1:{free_port()}", env=env, logs=tmp_path_factory.mktemp("rel-logs"))
        try:
            await asyncio.to_thread(live.start_api)
            yield live
        finally:
            await asyncio.to_thread(live.stop)


@pytest.fixture
async def rel_db(rel_stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    """The stack's database, read directly."""
    pool = await create_pool(rel_stack.env["TASKFLOW_DATABASE_URL"], max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of the test's own (no persistence) that it may restart empty."""
    server = OwnRedis(redis_server_binary(), tmp_path)
    server.start()
    yield server
    server.stop()
