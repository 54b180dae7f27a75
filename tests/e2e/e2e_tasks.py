"""Task types for the end-to-end tests, loaded by the API and worker processes they start
(this directory is on their PYTHONPATH and ``e2e_tasks`` is in TASKFLOW_TASK_MODULES)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskcore import TaskContext, task


class TickerPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="File to append one line to per tick")
    seconds: float = Field(gt=0, le=120, description="How long to keep ticking")
    interval: float = Field(default=0.05, gt=0, le=5, description="Seconds between ticks")


def _append(path: str, line: str) -> None:
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(line)


@task("e2e.ticker")
async def ticker(payload: TickerPayload) -> dict[str, int]:
    """Append a line to a file every ``interval`` seconds for ``seconds``: shows whether a handler still runs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + payload.seconds
    ticks = 0
    while loop.time() < deadline:
        _append(payload.path, f"tick {ticks}\n")
        ticks += 1
        await asyncio.sleep(payload.interval)
    return {"ticks": ticks}


class StepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    fail: bool = Field(default=False, description="Raise instead of returning")


@task("e2e.step")
async def step(payload: StepPayload, ctx: TaskContext) -> dict[str, Any]:
    """A workflow step: returns its name and what it saw of its parents (ctx.parents)."""
    if payload.fail:
        raise RuntimeError(f"step {payload.name} fails on purpose")
    return {"name": payload.name, "parents": dict(ctx.parents)}


class BatchDonePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = "done"
    path: str | None = Field(default=None, description="File to append one line to per run")


@task("e2e.batch_done")
async def batch_done(payload: BatchDonePayload, ctx: TaskContext) -> dict[str, Any]:
    """A batch's on_complete task: returns what it saw of the batch (ctx.batch); a line per run in ``path``."""
    if payload.path is not None:
        _append(payload.path, f"{payload.label}\n")
    return {"label": payload.label, "batch": None if ctx.batch is None else dict(ctx.batch)}


class BlockPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(gt=0, le=60, description="How long to hold the worker's event loop")


@task("e2e.block_loop")
async def block_loop(payload: BlockPayload) -> dict[str, float]:
    """A buggy handler: a blocking call inside a coroutine stops the worker's whole event loop (the liveness test)."""
    time.sleep(payload.seconds)  # noqa: ASYNC251 - blocking the loop is the point
    return {"blocked": payload.seconds}


class ProgressPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=4, ge=1, le=1000)
    interval: float = Field(default=0.5, ge=0, le=5, description="Seconds between reports")


@task("e2e.progress")
async def report_progress(payload: ProgressPayload, ctx: TaskContext) -> dict[str, int]:
    """Report progress ``steps`` times, ``interval`` seconds apart."""
    for i in range(1, payload.steps + 1):
        await ctx.progress(i / payload.steps, f"resized {i} of {payload.steps}", data={"done": i})
        await asyncio.sleep(payload.interval)
    return {"steps": payload.steps}
