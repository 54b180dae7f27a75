"""Progress and bulk actions over the real processes: a handler's progress in GET and on /events,
and a bulk action that survives a worker killed mid-way (finished after restart, each task once)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.e2e._helpers import TASKS, submit, wait_for_status, wait_until
from tests.e2e.conftest import Stack, reap

pytestmark = pytest.mark.e2e


async def test_progress_is_on_the_task_and_streamed_over_events(api: httpx.AsyncClient) -> None:
    created = await submit(api, "e2e.progress", {"steps": 4, "interval": 0.6})
    kinds: list[tuple[str, dict[str, Any]]] = []
    async with api.stream("GET", f"{TASKS}/{created['id']}/events", timeout=60) as response:
        assert response.status_code == 200
        kind = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind is not None:
                kinds.append((kind, orjson.loads(line.split(":", 1)[1])))
    progress = [body["progress"] for kind, body in kinds if kind == "progress"]
    assert len(progress) >= 2, kinds  # reports 0.6 s apart: each gets through the 1 s throttle or the next
    fractions = [p["fraction"] for p in progress]
    assert fractions == sorted(fractions)
    assert kinds[-1][0] == "status"
    assert kinds[-1][1]["status"] == "succeeded"
    final = (await api.get(f"{TASKS}/{created['id']}")).json()
    assert final["progress"]["fraction"] == 1.0
    assert final["progress"]["message"] == "resized 4 of 4"
    assert final["progress"]["data"] == {"done": 4}


async def test_get_shows_progress_while_the_task_runs(api: httpx.AsyncClient) -> None:
    created = await submit(api, "e2e.progress", {"steps": 3, "interval": 1.5})
    await wait_for_status(api, created["id"], "running", within=15)

    async def reported() -> bool:
        body = (await api.get(f"{TASKS}/{created['id']}")).json()
        return body["status"] == "running" and body["progress"] is not None

    await wait_until(reported, within=10, what="progress while running")
    done = await wait_for_status(api, created["id"], "succeeded", within=20)
    assert done["progress"]["fraction"] == 1.0


async def test_a_bulk_cancel_interrupted_by_a_worker_kill_finishes_after_restart(isolated_stack: Stack) -> None:
    stack = isolated_stack
    stack.env.update({"TASKFLOW_BULK_CHUNK_SIZE": "10", "TASKFLOW_BULK_CHUNK_PAUSE_SECONDS": "0.3"})
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=30) as api:
        batch = [{"task_type": "sleep", "payload": {"seconds": 1}, "delay_seconds": 3600} for _ in range(120)]
        stored = await api.post(f"{TASKS}/batch", json={"tasks": batch})
        assert stored.status_code in {200, 201, 202}, stored.text
        dry = await api.post(
            "/api/v1/bulk", json={"action": "cancel", "filter": {"status": ["scheduled"]}, "dry_run": True}
        )
        assert dry.json()["matched"] == 120
        started = await api.post("/api/v1/bulk", json={"action": "cancel", "filter": {"status": ["scheduled"]}})
        assert started.status_code == 202, started.text
        bulk_id = started.json()["id"]
        worker = stack.start_worker()

        async def midway() -> bool:
            body = (await api.get(f"/api/v1/bulk/{bulk_id}")).json()
            return 0 < body["done"] < body["matched"]

        await wait_until(midway, within=30, what="the bulk action half done")
        worker.send_signal(signal.SIGKILL)
        await asyncio.to_thread(reap, worker)
        halfway = (await api.get(f"/api/v1/bulk/{bulk_id}")).json()
        assert halfway["status"] == "running"
        assert halfway["done"] < 120
        stack.start_worker()  # a new worker id: it takes the lease once the dead one's expires (3 s)

        async def finished() -> bool:
            return (await api.get(f"/api/v1/bulk/{bulk_id}")).json()["status"] == "finished"

        await wait_until(finished, within=60, what="the bulk action finished after the restart")
        done = (await api.get(f"/api/v1/bulk/{bulk_id}")).json()
        assert (done["matched"], done["done"], done["succeeded"], done["skipped"], done["failed"]) == (
            120,
            120,
            120,
            0,
            0,
        )
        pool = await asyncpg.create_pool(stack.env["TASKFLOW_DATABASE_URL"], min_size=1, max_size=1)
        try:
            assert await pool.fetchval("SELECT count(*) FROM tasks WHERE status = 'cancelled'") == 120
            outcomes = await pool.fetch("SELECT outcome, count(*) AS n FROM bulk_action_items GROUP BY outcome")
            assert {r["outcome"]: r["n"] for r in outcomes} == {"succeeded": 120}
        finally:
            await pool.close()


async def test_a_bulk_retry_runs_the_failed_tasks_again(api: httpx.AsyncClient) -> None:
    mark = f"bulk-{uuid.uuid4().hex}"  # only this test's tasks: the stack is shared
    created = [await submit(api, "fail", {"times": -1, "message": mark}, max_retries=0) for _ in range(5)]
    first = {t["id"]: (await wait_for_status(api, t["id"], "failed", within=20))["finished_at"] for t in created}
    body = {
        "action": "retry",
        "filter": {
            "status": ["failed"],
            "task_type": "fail",
            "error_type": "DeliberateFailure",
            "payload": {"message": mark},
        },
    }
    dry = await api.post("/api/v1/bulk", json={**body, "dry_run": True})
    assert dry.json()["matched"] == 5
    started = await api.post("/api/v1/bulk", json=body)
    assert started.status_code == 202

    async def finished() -> bool:
        return (await api.get(f"/api/v1/bulk/{started.json()['id']}")).json()["status"] == "finished"

    await wait_until(finished, within=30, what="the bulk retry finished")
    assert (await api.get(f"/api/v1/bulk/{started.json()['id']}")).json()["succeeded"] == 5
    for task_id, finished_at in first.items():  # each ran once more (and failed again, as it always does)

        async def ran_again(task_id: str = task_id, finished_at: str = finished_at) -> bool:
            body = (await api.get(f"{TASKS}/{task_id}")).json()
            return body["status"] == "failed" and body["finished_at"] > finished_at

        await wait_until(ran_again, within=20, what=f"task {task_id} retried by the bulk action")
