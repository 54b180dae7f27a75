"""Priority: among tasks that are due, higher priorities run first (ties in submission order)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e._helpers import TASKS, parse_time, submit, wait_until
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


async def test_due_tasks_run_highest_priority_first(isolated_stack: Stack) -> None:
    stack = isolated_stack
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        # No worker yet: everything is due and waiting when the (one-at-a-time) worker starts.
        priorities = [0, 9, 5, 9, 1]
        ids = [(await submit(api, "test", {"n": n}, priority=p))["id"] for n, p in enumerate(priorities)]
        stack.start_worker(TASKFLOW_WORKER_CONCURRENCY="1")
        await asyncio.to_thread(stack.wait_for_workers, 1)

        async def all_done() -> bool:
            statuses = {(await api.get(f"{TASKS}/{task_id}")).json()["status"] for task_id in ids}
            return statuses == {"succeeded"}

        await wait_until(all_done, within=20, what="the worker runs all tasks", every=0.1)
        tasks = await asyncio.gather(*(api.get(f"{TASKS}/{task_id}") for task_id in ids))
        started = sorted((parse_time(t.json()["started_at"]), ids.index(t.json()["id"])) for t in tasks)
        order = [index for _, index in started]
        assert order == [1, 3, 2, 4, 0], [priorities[i] for i in order]
