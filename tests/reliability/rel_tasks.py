"""Task types for the reliability tests, loaded by the worker processes they start (this
directory is on their PYTHONPATH and ``rel_tasks`` is in TASKFLOW_TASK_MODULES).

``rel.record`` writes one row per execution into the ``executions`` table (tests/reliability/conftest.py) of the test's
database (straight to PostgreSQL via REL_EXECUTIONS_DATABASE_URL, never through a proxy the test
cuts), so a test can count how often each task's handler really ran, and on which process."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from taskcore import TaskContext, task

_pool: asyncpg.Pool | None = None
_pool_lock = asyncio.Lock()


async def _executions() -> asyncpg.Pool:
    global _pool
    async with _pool_lock:
        if _pool is None:
            _pool = await asyncpg.create_pool(os.environ["REL_EXECUTIONS_DATABASE_URL"], min_size=1, max_size=4)
    return _pool


class RecordPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=0, ge=0, le=60, description="How long the handler runs after recording")
    first_seconds: float | None = Field(default=None, ge=0, le=60, description="Run this long on attempt 1 instead")
    n: int = Field(default=0, description="Free-form tag")


@task("rel.record")
async def record(payload: RecordPayload, ctx: TaskContext) -> dict[str, Any]:
    """Record this execution (task, attempt, process), then run for ``seconds``."""
    pool = await _executions()
    await pool.execute(
        "INSERT INTO executions (task_id, attempt, pid) VALUES ($1, $2, $3)", ctx.task_id, ctx.attempt, os.getpid()
    )
    seconds = payload.first_seconds if ctx.attempt == 1 and payload.first_seconds is not None else payload.seconds
    if seconds:
        await asyncio.sleep(seconds)
    return {"pid": os.getpid(), "attempt": ctx.attempt, "n": payload.n}


class Empty(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Unserialisable:
    def __repr__(self) -> str:
        return "<Unserialisable>"


@task("rel.not_json")
async def not_json(payload: Empty) -> object:
    """Return something that is not JSON."""
    return {"value": Unserialisable()}


@task("rel.raise")
async def raise_error(payload: Empty) -> None:
    """Leak an exception of a kind nobody expects."""
    raise LookupError("poison: the handler leaked this")


@task("rel.exit")
async def exit_process(payload: Empty) -> None:
    """Call sys.exit() in the handler: it must end this task, not the worker."""
    sys.exit(3)


@task("rel.exit_sync")
def exit_in_thread(payload: Empty) -> None:
    """A sync handler (run in a thread) that raises SystemExit."""
    raise SystemExit(4)
