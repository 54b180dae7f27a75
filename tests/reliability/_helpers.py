"""Helpers for the fault tests: reading the executions table and waiting on task states in bulk."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import Counter

import asyncpg

from tests.e2e._helpers import wait_until


async def executions(db: asyncpg.Pool, task_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT attempt, pid FROM executions WHERE task_id = $1::uuid ORDER BY at", task_id
    )
    return rows


async def status_counts(db: asyncpg.Pool) -> Counter[str]:
    return Counter({r["status"]: r["n"] for r in await db.fetch("SELECT status, count(*) AS n FROM tasks GROUP BY 1")})


async def wait_running_on(db: asyncpg.Pool, task_id: str, *, within: float = 15) -> None:
    """Until the task's handler has started (its execution is recorded) and the row says running."""

    async def started() -> bool:
        status = await db.fetchval("SELECT status FROM tasks WHERE id = $1::uuid", task_id)
        return status == "running" and bool(await executions(db, task_id))

    await wait_until(started, within=within, what=f"task {task_id} runs")


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker we started: no drain, no goodbye, leases left behind."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


async def wait_exit(proc: subprocess.Popen[bytes], *, within: float) -> int:
    async def exited() -> bool:
        return proc.poll() is not None

    await wait_until(exited, within=within, what=f"process {proc.pid} exits")
    return proc.returncode


async def no_running_left(db: asyncpg.Pool) -> bool:
    await asyncio.sleep(0)
    return int(await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'running'")) == 0
