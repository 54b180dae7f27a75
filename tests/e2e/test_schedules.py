"""Schedules and unique tasks through the real API and worker processes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import httpx
import pytest

from taskflow_client import Client, task_body
from tests.e2e._helpers import parse_time, wait_until
from tests.e2e.conftest import Stack
from tests.e2e.test_cli import api_key, as_json, run

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
        # fired within about a second of its slot (0-0.5 s when the machine is quiet; room for a loaded one)
        assert timedelta(0) <= late < timedelta(seconds=2.5), task
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


def test_cli_schedules_and_the_sync_client(stack: Stack) -> None:
    """`taskflow schedules ...` as a subprocess (global options before or after), then the sync client."""
    created = as_json(
        run(
            stack,
            "schedules",
            "create",
            "cli-hourly",
            "test",
            "--payload",
            '{"message": "c"}',
            "--cron",
            "0 * * * *",
            "--timezone",
            "Asia/Kolkata",
            "--json",
        )
    )
    sid = created["id"]
    assert len(created["next_runs"]) == 3
    listed = run(stack, "schedules", "list")
    assert listed.returncode == 0, listed.stderr
    assert "cli-hourly" in listed.stdout
    assert as_json(run(stack, "--json", "schedules", "pause", sid))["paused"] is True
    assert as_json(run(stack, "schedules", "resume", sid, "--json"))["paused"] is False
    task = as_json(run(stack, "schedules", "trigger", sid, "--json"))
    assert task["schedule_id"] == sid
    assert as_json(run(stack, "schedules", "get", sid, "--json"))["last_runs"][0]["task_id"] == task["id"]
    bad = run(stack, "schedules", "create", "cli-bad", "test", "--cron", "not cron")
    assert bad.returncode == 2, bad.stderr  # input refused
    assert "cron" in bad.stderr
    assert run(stack, "schedules", "delete", sid).returncode == 0
    assert run(stack, "schedules", "get", sid).returncode == 3  # not found

    with Client(stack.url, api_key=api_key(stack)) as tf:
        made = tf.create_schedule("sync-client", task_body("test", {"message": "s"}), every_seconds=3600, paused=True)
        assert made.next_runs == []
        assert tf.update_schedule(made.id, paused=False).next_runs
        assert tf.trigger_schedule(made.id).schedule_id == made.id
        first = tf.submit("test", {"message": "u"}, unique_key="sync:u", delay_seconds=60)
        assert tf.submit("test", {"message": "u"}, unique_key="sync:u").id == first.id
        tf.delete_schedule(made.id)
        assert all(s.id != made.id for s in tf.list_schedules())
