"""Schedules and unique tasks through the real API and worker processes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import parse_time, wait_until

pytestmark = pytest.mark.e2e

SCHEDULES = "/api/v1/schedules"


async def test_a_schedule_every_second_runs_tasks_that_succeed(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    created = await api.post(
        SCHEDULES,
        json={"name": "e2e-every-second", "every_seconds": 1, "task": {"task_type": "test", "payload": {"n": 1}}},
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    try:

        async def three_succeeded() -> bool:
            runs = (
                await api.get("/api/v1/tasks", params={"schedule_id": schedule["id"], "status": "succeeded"})
            ).json()
            return len(runs["items"]) >= 3

        await wait_until(three_succeeded, within=15, what="three runs of the schedule succeed")
    finally:
        assert (await api.post(f"{SCHEDULES}/{schedule['id']}/pause")).status_code == 200
    runs = (await api.get("/api/v1/tasks", params={"schedule_id": schedule["id"], "limit": 100})).json()["items"]
    slots = [parse_time(t["scheduled_for"]) for t in runs]
    assert len(slots) == len(set(slots))  # one task per slot
    for task in runs:
        late = parse_time(task["created_at"]) - parse_time(task["scheduled_for"])
        assert timedelta(0) <= late < timedelta(seconds=1.5), task  # fired within about a second of its slot
    listed = (await api.get(f"{SCHEDULES}/{schedule['id']}")).json()
    assert listed["last_runs"]
    assert listed["last_runs"][0]["task_id"] in {t["id"] for t in runs}
    assert (await api.delete(f"{SCHEDULES}/{schedule['id']}")).status_code == 204


async def test_twenty_concurrent_unique_submits_through_the_api_store_one(
    api: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    body = {"task_type": "sleep", "payload": {"seconds": 0.5}, "unique_key": "e2e:unique"}
    answers = await asyncio.gather(*(api.post("/api/v1/tasks", json=body) for _ in range(20)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 19 + [202], [a.text for a in answers]
    holder = next(a for a in answers if a.status_code == 202).json()["id"]
    assert {a.headers.get("TaskFlow-Duplicate-Of") for a in answers if a.status_code == 200} == {holder}
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE unique_key = 'e2e:unique'") == 1
