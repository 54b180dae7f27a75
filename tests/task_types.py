"""Task types used by the tests, registered like a user's own module would be."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from taskcore import TaskContext, task


class Empty(BaseModel):
    pass


class Gate(BaseModel):
    key: str
    seconds: float = 30


class Unserialisable:
    pass


# Handlers record their runs here so in-process tests can count executions.
RUNS: dict[str, int] = {}


@task("tests.count")
async def count(payload: Gate, ctx: TaskContext) -> dict[str, Any]:
    """Count executions per key."""
    RUNS[payload.key] = RUNS.get(payload.key, 0) + 1
    return {"key": payload.key, "attempt": ctx.attempt}


@task("tests.hang")
async def hang(payload: Gate) -> None:
    """Sleep for ``seconds`` (longer than any timeout the tests give it)."""
    RUNS[payload.key] = RUNS.get(payload.key, 0) + 1
    await asyncio.sleep(payload.seconds)


@task("tests.bad_result")
async def bad_result(payload: Empty) -> object:
    """Return something that is not JSON."""
    return Unserialisable()


@task("tests.flow_report", queue="reports")
async def flow_report(payload: Empty) -> dict[str, Any]:
    """A task type that declares its queue (flow-control tests)."""
    return {"ok": True}
