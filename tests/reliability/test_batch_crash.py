"""A worker SIGKILLed while it runs the last unfinished task of a batch: the lease runs out, the
task runs again on a surviving worker, and the batch's on_complete task is stored and run exactly
once, after every task of the batch ended, seeing the final counts."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.reliability._helpers import executions, kill, no_running_left, wait_running_on
from tests.reliability.test_worker_crash import RECOVERY_BOUND

pytestmark = pytest.mark.e2e


async def test_a_worker_killed_on_the_last_task_of_a_batch_leaves_on_complete_to_run_once(
    rel_stack: Stack, rel_db: asyncpg.Pool
) -> None:
    stack = rel_stack
    doomed = stack.start_worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    tasks = [{"task_type": "rel.record", "payload": {"n": i}, "max_retries": 2} for i in range(9)]
    tasks.append({"task_type": "rel.record", "payload": {"n": 9, "first_seconds": 30}, "max_retries": 2})
    body = {"tasks": tasks, "on_complete": {"task_type": "rel.record", "payload": {"n": 999}}}
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        response = await api.post("/api/v1/tasks/batch", json=body)
        assert response.status_code == 202, response.text
        batch_id = response.json()["batch_id"]
        last = response.json()["items"][-1]["id"]
        await wait_running_on(rel_db, last)
        deadline = time.monotonic() + 30
        while (got := (await api.get(f"/api/v1/batches/{batch_id}")).json())["counts"]["succeeded"] < 9:
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.1)
        assert got["on_complete"]["status"] is None  # the last task still runs: nothing fired
        survivor = stack.start_worker()
        await asyncio.to_thread(stack.wait_for_workers, 2)
        kill(doomed)

        deadline = time.monotonic() + RECOVERY_BOUND + 20
        while True:
            got = (await api.get(f"/api/v1/batches/{batch_id}")).json()
            if got["on_complete"]["status"] in ("succeeded", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.2)
        assert got["finished"] is True
        assert got["counts"]["succeeded"] == 10
        assert got["on_complete"]["status"] == "succeeded"
        callback_id = got["on_complete"]["task_id"]
        await asyncio.sleep(1.5)  # a second run of on_complete would show here

    runs = await executions(rel_db, last)
    assert [(r["attempt"], r["pid"]) for r in runs] == [(1, doomed.pid), (2, survivor.pid)]
    callback_runs = await executions(rel_db, callback_id)
    assert [r["pid"] for r in callback_runs] == [survivor.pid]
    assert await rel_db.fetchval("SELECT count(*) FROM tasks WHERE completes_batch = $1::uuid", batch_id) == 1
    started = await rel_db.fetchval("SELECT min(at) FROM executions WHERE task_id = $1::uuid", callback_id)
    ended = await rel_db.fetchval("SELECT max(finished_at) FROM tasks WHERE batch_id = $1::uuid", batch_id)
    assert started >= ended
    assert await no_running_left(rel_db)
