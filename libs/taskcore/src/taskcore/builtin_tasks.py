"""Built-in task types: ``test`` (echo), ``sleep``, ``fail`` and ``cpu``."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskcore.registry import TaskContext, task


class EchoPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str = Field(default="", max_length=10_000, description="Echoed back in the result")


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=3600, description="How long to sleep")


class FailPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    times: int = Field(default=-1, ge=-1, description="Fail the first N attempts, then succeed; -1 fails every attempt")
    message: str = Field(default="deliberate failure", max_length=1000)


class CpuPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(default=10_000, ge=1, le=5_000_000, description="SHA-256 rounds to compute")


class DeliberateFailure(RuntimeError):
    """Raised by the ``fail`` task."""


@task("test")
async def echo(payload: EchoPayload, ctx: TaskContext) -> dict[str, Any]:
    """Echo the payload back: the quick-start task."""
    return {"echo": payload.model_dump(), "attempt": ctx.attempt}


@task("sleep")
async def sleep(payload: SleepPayload) -> dict[str, Any]:
    """Sleep for the given number of seconds (cancellable)."""
    await asyncio.sleep(payload.seconds)
    return {"slept": payload.seconds}


@task("fail")
async def fail(payload: FailPayload, ctx: TaskContext) -> dict[str, Any]:
    """Fail the first ``times`` attempts (every attempt when -1): exercises retries."""
    if payload.times < 0 or ctx.attempt <= payload.times:
        raise DeliberateFailure(f"{payload.message} (attempt {ctx.attempt})")
    return {"succeeded_on_attempt": ctx.attempt}


@task("cpu")
def cpu(payload: CpuPayload) -> dict[str, Any]:
    """Bounded CPU work (iterated SHA-256), run off the event loop."""
    digest = b"taskflow"
    for _ in range(payload.rounds):
        digest = hashlib.sha256(digest).digest()
    return {"rounds": payload.rounds, "digest": digest.hex()}
