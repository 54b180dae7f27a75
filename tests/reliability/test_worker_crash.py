"""A worker SIGKILLed mid-task: its lease expires, the reconciler (in a surviving worker) takes
the task back, and it runs again elsewhere — or fails once its attempts are spent. Never stuck
in ``running``. Recovery takes about lease_seconds + reconcile_interval_seconds (3 s + 0.5 s here)."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import TASKS, submit, wait_for_status
from tests.e2e.conftest import Stack
from tests.reliability._helpers import executions, kill, no_running_left, wait_running_on

pytestmark = pytest.mark.e2e

LEASE = 3.0  # TASKFLOW_LEASE_SECONDS of the stack
RECOVERY_BOUND = LEASE * 2 + 15  # generous: lease + reconcile interval + claim on a loaded machine


async def test_a_killed_workers_task_runs_again_on_another_worker(rel_stack: Stack, rel_db: asyncpg.Pool) -> None:
    stack = rel_stack
    doomed = stack.start_worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        created = await submit(api, "rel.record", {"first_seconds": 30, "seconds": 0.5}, max_retries=2)
        await wait_running_on(rel_db, created["id"])
        survivor = stack.start_worker()
        await asyncio.to_thread(stack.wait_for_workers, 2)
        kill(doomed)

        # still running in PostgreSQL until its lease runs out; then it comes back
        assert (await api.get(f"{TASKS}/{created['id']}")).json()["status"] == "running"
        done = await wait_for_status(api, created["id"], "succeeded", "failed", within=RECOVERY_BOUND)
        assert done["status"] == "succeeded", done
        assert done["attempt"] == 2  # the killed run counts as an attempt
        assert done["result"]["pid"] == survivor.pid
        runs = await executions(rel_db, created["id"])
        assert [(r["attempt"], r["pid"]) for r in runs] == [(1, doomed.pid), (2, survivor.pid)]
        assert await no_running_left(rel_db)
    assert survivor.poll() is None, stack.log("worker-1")


async def test_a_killed_workers_task_fails_when_no_attempt_is_left(rel_stack: Stack, rel_db: asyncpg.Pool) -> None:
    stack = rel_stack
    doomed = stack.start_worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        created = await submit(api, "rel.record", {"seconds": 30}, max_retries=0)
        await wait_running_on(rel_db, created["id"])
        kill(doomed)
        stack.start_worker()  # its reconciler is the one that finds the expired lease
        done = await wait_for_status(api, created["id"], "succeeded", "failed", within=RECOVERY_BOUND)
        assert done["status"] == "failed", done
        assert done["error"]["type"] == "LeaseExpired"
        assert "lease" in done["error"]["message"]
        assert done["finished_at"] is not None
        assert len(await executions(rel_db, created["id"])) == 1  # it never ran a second time
        assert await no_running_left(rel_db)
