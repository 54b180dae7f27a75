"""A worker told to stop (SIGTERM, as Kubernetes does) finishes what it runs and loses nothing."""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import httpx
import pytest

from taskcore.store import create_pool
from tests.e2e._helpers import TASKS, submit, wait_for_status, wait_until
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 10  # TASKFLOW_WORKER_SHUTDOWN_GRACE_SECONDS of the stack
SLEEP_SECONDS = 1.5


async def test_sigterm_drains_running_tasks(isolated_stack: Stack) -> None:
    stack = isolated_stack
    worker = stack.start_worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    pool: asyncpg.Pool = await create_pool(stack.env["TASKFLOW_DATABASE_URL"], max_size=2)
    try:
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
            ids = [(await submit(api, "sleep", {"seconds": SLEEP_SECONDS}))["id"] for _ in range(3)]

            async def all_running() -> bool:
                running = await pool.fetchval(
                    "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'running'", ids
                )
                return bool(running == len(ids))

            await wait_until(all_running, within=5, what="the worker runs all three tasks")
            worker.send_signal(signal.SIGTERM)

            async def exited() -> bool:
                return worker.poll() is not None

            await wait_until(exited, within=GRACE_SECONDS, what="the worker exits within its grace period")
            assert worker.returncode == 0, stack.log("worker-0")

            rows = await pool.fetch("SELECT status, attempt, result FROM tasks WHERE id = ANY($1::uuid[])", ids)
            assert len(rows) == len(ids)
            assert [r["status"] for r in rows] == ["succeeded"] * len(ids), stack.log("worker-0")
            assert {r["attempt"] for r in rows} == {1}
            assert all(r["result"] == {"slept": SLEEP_SECONDS} for r in rows)
            assert await pool.fetchval("SELECT count(*) FROM tasks WHERE status = 'running'") == 0
            # it said goodbye: the queue no longer counts it
            assert (await api.get("/api/v1/queue")).json()["workers"] == 0
            for task_id in ids:
                assert (await api.get(f"{TASKS}/{task_id}")).json()["status"] == "succeeded"
    finally:
        await pool.close()


async def test_tasks_submitted_while_no_worker_runs_wait_and_run_on_the_next(isolated_stack: Stack) -> None:
    """Nothing is lost while no worker runs: the next worker to start picks the tasks up."""
    stack = isolated_stack
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        ids = [(await submit(api, "greet", {"name": f"w{n}"}))["id"] for n in range(3)]
        await asyncio.sleep(0.3)
        assert {(await api.get(f"{TASKS}/{i}")).json()["status"] for i in ids} == {"queued"}
        assert (await api.get("/api/v1/queue")).json()["due"] == 3

        stack.start_worker()
        await asyncio.to_thread(stack.wait_for_workers, 1)

        async def all_done() -> bool:
            statuses = {(await api.get(f"{TASKS}/{i}")).json()["status"] for i in ids}
            return statuses == {"succeeded"}

        await wait_until(all_done, within=15, what="the new worker runs the waiting tasks", every=0.1)


async def test_sigterm_past_the_grace_period_gives_the_task_back(isolated_stack: Stack) -> None:
    """A task still running when the grace period ends is released, not lost or failed: another worker runs it."""
    stack = isolated_stack
    impatient = stack.start_worker(TASKFLOW_WORKER_SHUTDOWN_GRACE_SECONDS="1")
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        created = await submit(api, "sleep", {"seconds": 3}, max_retries=0)
        await wait_for_status(api, created["id"], "running", within=5)
        impatient.send_signal(signal.SIGTERM)

        async def exited() -> bool:
            return impatient.poll() is not None

        await wait_until(exited, within=GRACE_SECONDS, what="the worker exits after its 1 s grace period")
        assert impatient.returncode == 0, stack.log("worker-0")
        released = (await api.get(f"{TASKS}/{created['id']}")).json()
        assert released["status"] == "queued", released  # given back, the interrupted attempt not counted
        assert released["attempt"] == 0

        successor = stack.start_worker()
        await asyncio.to_thread(stack.wait_for_workers, 1)
        try:
            done = await wait_for_status(api, created["id"], "succeeded", "failed", within=10)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nsuccessor alive: {successor.poll() is None}; log: {stack.log('worker-1')}"
            ) from exc
        assert done["status"] == "succeeded", done
        assert done["attempt"] == 1  # max_retries 0: the released attempt did not use up the budget
