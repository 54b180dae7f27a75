"""A rolling deploy: each old worker gets SIGTERM while it runs tasks and a new one takes its place.
In-flight tasks finish within the grace period, tasks not started wait for the new workers, and
every task runs exactly once. (One worker draining alone, and a task outliving the grace period
being handed back, are covered by tests/e2e/test_worker_shutdown.py.)"""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import submit, wait_until
from tests.e2e.conftest import Stack
from tests.reliability._helpers import wait_exit

pytestmark = pytest.mark.e2e

TASKS_TOTAL = 24
SECONDS = 1.0
GRACE = 10  # TASKFLOW_WORKER_SHUTDOWN_GRACE_SECONDS of the stack


async def test_rolling_restart_of_every_worker_loses_and_repeats_nothing(
    rel_stack: Stack, rel_db: asyncpg.Pool
) -> None:
    stack = rel_stack
    small = {"TASKFLOW_WORKER_CONCURRENCY": "3"}
    old = [stack.start_worker(**small), stack.start_worker(**small)]
    await asyncio.to_thread(stack.wait_for_workers, 2)
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        ids = [(await submit(api, "rel.record", {"seconds": SECONDS, "n": n}))["id"] for n in range(TASKS_TOTAL)]

        for proc in old:  # one at a time, as a Deployment's rolling update does

            async def busy(pid: int = proc.pid) -> bool:
                return bool(await rel_db.fetchval("SELECT count(*) FROM executions WHERE pid = $1", pid))

            await wait_until(busy, within=15, what=f"worker {proc.pid} runs tasks")
            proc.send_signal(signal.SIGTERM)
            stack.start_worker(**small)
            assert await wait_exit(proc, within=GRACE + 5) == 0

        async def all_done() -> bool:
            n = await rel_db.fetchval("SELECT count(*) FROM tasks WHERE status = 'succeeded'")
            return bool(n == TASKS_TOTAL)

        await wait_until(all_done, within=60, what="every task succeeded", every=0.2)
    rows = await rel_db.fetch("SELECT id, attempt FROM tasks")
    assert {str(r["id"]) for r in rows} == set(ids)
    assert {r["attempt"] for r in rows} == {1}
    runs = await rel_db.fetch("SELECT task_id, count(*) AS n, min(pid) AS pid FROM executions GROUP BY task_id")
    assert len(runs) == TASKS_TOTAL
    assert {r["n"] for r in runs} == {1}  # drained, not interrupted and repeated
    pids = {r["pid"] for r in runs}
    assert {p.pid for p in old} <= pids  # the old workers did part of the work...
    assert pids - {p.pid for p in old}  # ...and the new ones the rest
