"""A worker SIGKILLed while it runs a workflow's parent step: the lease runs out, the parent runs
again on a surviving worker and succeeds, and across the whole run no step ever started (no
execution of its handler, not only its last attempt) before every one of its parents succeeded."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.reliability._helpers import executions, kill, no_running_left, wait_running_on
from tests.reliability.test_worker_crash import RECOVERY_BOUND

pytestmark = pytest.mark.e2e


def step(ref: str, *depends_on: str, **payload: Any) -> dict[str, Any]:
    return {
        "ref": ref,
        "task_type": "rel.record",
        "payload": {"seconds": 0.2, **payload},
        "depends_on": list(depends_on),
        "max_retries": 2,
    }


async def test_a_killed_parent_retries_and_no_step_starts_before_its_parents(
    rel_stack: Stack, rel_db: asyncpg.Pool
) -> None:
    stack = rel_stack
    doomed = stack.start_worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    graph = [
        step("fetch", first_seconds=30),  # attempt 1 hangs until its worker is killed
        *(step(f"part{i}", "fetch") for i in range(4)),
        step("merge", *(f"part{i}" for i in range(4))),
        step("report", "merge", "fetch"),
    ]
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        response = await api.post("/api/v1/workflows", json={"name": "crash", "tasks": graph})
        assert response.status_code == 202, response.text
        created = response.json()
        ids = created["tasks"]
        await wait_running_on(rel_db, ids["fetch"])
        survivor = stack.start_worker()
        await asyncio.to_thread(stack.wait_for_workers, 2)
        kill(doomed)

        deadline = time.monotonic() + RECOVERY_BOUND + 20
        while (body := (await api.get(f"/api/v1/workflows/{created['id']}")).json())["status"] == "running":
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.2)
        assert body["status"] == "succeeded", body

    runs = await executions(rel_db, ids["fetch"])
    assert [(r["attempt"], r["pid"]) for r in runs] == [(1, doomed.pid), (2, survivor.pid)]
    rows = {
        r["id"]: r
        for r in await rel_db.fetch(
            "SELECT id, step_ref, status, started_at, finished_at, depends_on FROM tasks WHERE workflow_id = $1::uuid",
            created["id"],
        )
    }
    every_run = await rel_db.fetch("SELECT task_id, at FROM executions")
    checked = 0
    for child in rows.values():
        for parent_id in child["depends_on"]:
            parent = rows[parent_id]
            assert child["started_at"] >= parent["finished_at"], (child["step_ref"], parent["step_ref"])
            for run in every_run:
                if run["task_id"] == child["id"]:
                    assert run["at"] >= parent["finished_at"], (child["step_ref"], parent["step_ref"])
                    checked += 1
    assert checked == 4 + 4 + 2  # every edge's child ran once: part0..3 <- fetch, merge <- 4, report <- 2
    assert await no_running_left(rel_db)
    assert survivor.poll() is None, stack.log("worker-1")
