"""Redis restarted empty while tasks wait in it: every queued and scheduled task in PostgreSQL is
enqueued again by the reconciler and runs exactly once. (A worker that keeps running across the
restart, and tasks submitted while Redis is down, are covered by tests/e2e/test_redis_restart.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import redis.asyncio

from tests.e2e._helpers import wait_until
from tests.e2e.conftest import Stack, free_port, provision
from tests.e2e.test_redis_restart import OwnRedis
from tests.reliability.conftest import EXECUTIONS_TABLE, reliability_env

pytestmark = pytest.mark.e2e

QUEUED, SCHEDULED = 40, 10


@pytest.fixture
async def empty_redis_stack(own_redis: OwnRedis, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with provision("taskflow_rel_redis") as env:
        reliability_env(env)
        env["TASKFLOW_REDIS_URL"] = own_redis.url
        pool = await asyncpg.create_pool(env["TASKFLOW_DATABASE_URL"], min_size=1, max_size=1)
        try:
            await pool.execute(EXECUTIONS_TABLE)
        finally:
            await pool.close()
        live = Stack(url=f"http://127.0.0.1:{free_port()}", env=env, logs=tmp_path_factory.mktemp("rel-redis-logs"))
        try:
            await asyncio.to_thread(live.start_api)
            yield live
        finally:
            await asyncio.to_thread(live.stop)


async def test_every_waiting_task_runs_once_after_redis_comes_back_empty(
    empty_redis_stack: Stack, own_redis: OwnRedis
) -> None:
    stack = empty_redis_stack
    db = await asyncpg.create_pool(stack.env["TASKFLOW_DATABASE_URL"], min_size=1, max_size=2)
    jobs = redis.asyncio.Redis.from_url(own_redis.url)
    try:
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
            bodies = [{"task_type": "rel.record", "payload": {"n": n}} for n in range(QUEUED)]
            bodies += [
                {"task_type": "rel.record", "payload": {"n": 100 + n}, "delay_seconds": 2} for n in range(SCHEDULED)
            ]
            ids = []
            for body in bodies:
                response = await api.post("/api/v1/tasks", json=body)
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])
        assert await jobs.zcard(stack.env["TASKFLOW_QUEUE_NAME"]) == QUEUED + SCHEDULED  # all waiting in Redis

        own_redis.stop()
        own_redis.start()  # no persistence: every job is gone
        await jobs.aclose()
        jobs = redis.asyncio.Redis.from_url(own_redis.url)
        assert await jobs.zcard(stack.env["TASKFLOW_QUEUE_NAME"]) == 0
        waiting = await db.fetchval("SELECT count(*) FROM tasks WHERE status IN ('queued', 'scheduled')")
        assert waiting == QUEUED + SCHEDULED  # PostgreSQL still knows them all

        stack.start_worker()

        async def all_done() -> bool:
            done = await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'succeeded'")
            return bool(done == len(ids))

        await wait_until(all_done, within=60, what="every task lost with Redis ran", every=0.25)
        runs = await db.fetch("SELECT task_id, count(*) AS n FROM executions GROUP BY task_id")
        assert {str(r["task_id"]) for r in runs} == set(ids)
        assert {r["n"] for r in runs} == {1}  # exactly once each
        assert '"event":"reconciled"' in (stack.logs / "worker-0.log").read_text()
    finally:
        await jobs.aclose()
        await db.close()
