"""Submitting tasks: options echoed, delayed and scheduled runs, Idempotency-Key."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import TASKS, assert_problem, parse_time, submit, task_row, wait_for_status
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


async def test_options_are_echoed_and_stored(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    created = await submit(api, "test", {"message": "opts"}, priority=7, max_retries=5, timeout_seconds=42)
    assert (created["priority"], created["max_retries"], created["timeout_seconds"]) == (7, 5, 42)
    assert created["status"] in {"queued", "running", "succeeded"}
    assert created["attempt"] in {0, 1}
    assert created["links"]["self"] == f"{TASKS}/{created['id']}"

    done = await wait_for_status(api, created["id"], "succeeded")
    assert (done["priority"], done["max_retries"], done["timeout_seconds"]) == (7, 5, 42)
    assert done["result"]["echo"] == {"message": "opts"}
    row = await task_row(db, created["id"])
    assert (row["priority"], row["max_retries"], row["timeout_seconds"], row["attempt"]) == (7, 5, 42, 1)


async def test_defaults_apply_when_options_are_omitted(api: httpx.AsyncClient) -> None:
    created = await submit(api, "test", {})
    assert created["priority"] == 0
    assert created["max_retries"] == 3  # TASKFLOW_DEFAULT_MAX_RETRIES
    assert created["timeout_seconds"] == 300  # TASKFLOW_DEFAULT_TIMEOUT_SECONDS
    await wait_for_status(api, created["id"], "succeeded")


async def _assert_waits_until_due(api: httpx.AsyncClient, task_id: str, due: datetime) -> None:
    """The task stays scheduled (never started) while it is not due, then runs, starting no earlier than due."""
    while datetime.now(UTC) < due - timedelta(seconds=0.2):
        body = (await api.get(f"{TASKS}/{task_id}")).json()
        assert body["status"] == "scheduled", body
        assert body["attempt"] == 0, body
        assert body["started_at"] is None, body
        await asyncio.sleep(0.1)
    done = await wait_for_status(api, task_id, "succeeded", within=5)
    assert done["attempt"] == 1
    # arq keeps due times in whole milliseconds: allow that rounding, nothing more.
    assert parse_time(done["started_at"]) >= due - timedelta(milliseconds=2), (done["started_at"], due)


async def test_run_at_in_the_future_is_scheduled_and_runs_when_due(api: httpx.AsyncClient) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=1.5)
    created = await submit(api, "test", {"message": "later"}, run_at=run_at.isoformat())
    assert created["status"] == "scheduled"
    assert parse_time(created["run_at"]) == run_at
    await _assert_waits_until_due(api, created["id"], run_at)


async def test_run_at_with_another_offset_is_the_same_instant(api: httpx.AsyncClient) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=1)
    local = run_at.astimezone(timezone(timedelta(hours=5, minutes=30)))
    created = await submit(api, "test", {}, run_at=local.isoformat())
    assert created["status"] == "scheduled"
    assert parse_time(created["run_at"]) == run_at  # returned in UTC
    await _assert_waits_until_due(api, created["id"], run_at)


async def test_run_at_in_the_past_runs_now(api: httpx.AsyncClient) -> None:
    created = await submit(api, "test", {}, run_at=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert created["status"] in {"queued", "running", "succeeded"}
    await wait_for_status(api, created["id"], "succeeded", within=5)


async def test_delay_seconds_is_scheduled_and_runs_after_the_delay(api: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    created = await submit(api, "test", {"message": "delayed"}, delay_seconds=1.5)
    after = datetime.now(UTC)
    assert created["status"] == "scheduled"
    due = parse_time(created["run_at"])
    assert before + timedelta(seconds=1.5) <= due <= after + timedelta(seconds=1.5)
    await _assert_waits_until_due(api, created["id"], due)


async def test_idempotency_key_replays_the_original_task(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    key = f"e2e-{uuid.uuid4()}"
    body = {"task_type": "test", "payload": {"message": "once"}, "priority": 2}
    first = await api.post(TASKS, json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    await wait_for_status(api, first.json()["id"], "succeeded")

    again = await api.post(TASKS, json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == f"{TASKS}/{first.json()['id']}"
    assert again.json()["status"] == "succeeded"  # the original task as it is now
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE idempotency_key = $1", key) == 1
    row = await task_row(db, first.json()["id"])
    assert row["attempt"] == 1  # the replay did not run it again


async def test_idempotency_key_reused_with_another_body_is_a_conflict(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    key = f"e2e-{uuid.uuid4()}"
    first = await api.post(TASKS, json={"task_type": "test", "payload": {"n": 1}}, headers={"Idempotency-Key": key})
    assert first.status_code == 202
    for other in (
        {"task_type": "test", "payload": {"n": 2}},
        {"task_type": "test", "payload": {"n": 1}, "priority": 1},
        {"task_type": "greet", "payload": {"name": "n"}},
    ):
        conflict = await api.post(TASKS, json=other, headers={"Idempotency-Key": key})
        problem = assert_problem(conflict, 409)
        assert key in problem["detail"]
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE idempotency_key = $1", key) == 1


async def test_concurrent_repeats_of_one_idempotency_key_store_one_task(
    api: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    key = f"e2e-{uuid.uuid4()}"
    body = {"task_type": "test", "payload": {"message": "race"}}
    responses = await asyncio.gather(*(api.post(TASKS, json=body, headers={"Idempotency-Key": key}) for _ in range(10)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 9
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE idempotency_key = $1", key) == 1
    await wait_for_status(api, responses[0].json()["id"], "succeeded")
    assert (await task_row(db, responses[0].json()["id"]))["attempt"] == 1


async def test_location_header_points_at_the_task(api: httpx.AsyncClient) -> None:
    response = await api.post(TASKS, json={"task_type": "test", "payload": {}})
    assert response.status_code == 202
    fetched = await api.get(response.headers["Location"])
    assert fetched.status_code == 200
    assert fetched.json()["id"] == response.json()["id"]


@pytest.mark.parametrize(
    ("task_type", "payload", "result"),
    [
        ("test", {"message": "echo", "extra": [1, 2]}, {"echo": {"message": "echo", "extra": [1, 2]}, "attempt": 1}),
        ("sleep", {"seconds": 0.1}, {"slept": 0.1}),
        ("fail", {"times": 0}, {"succeeded_on_attempt": 1}),
    ],
)
async def test_builtin_task_types_run(
    api: httpx.AsyncClient, task_type: str, payload: dict[str, object], result: dict[str, object]
) -> None:
    created = await submit(api, task_type, payload)
    done = await wait_for_status(api, created["id"], "succeeded", "failed", within=5)
    assert done["status"] == "succeeded", done["error"]
    assert done["result"] == result


async def test_cpu_task_runs(api: httpx.AsyncClient) -> None:
    created = await submit(api, "cpu", {"rounds": 20_000})
    done = await wait_for_status(api, created["id"], "succeeded", "failed", within=10)
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["rounds"] == 20_000
    assert len(done["result"]["digest"]) == 64


def server_processes(pid: int) -> list[int]:
    """The processes ``pid`` spawned to serve (uvicorn's workers; not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if parent == pid and b"spawn_main" in command:
                found.append(int(entry.name))
    return found


async def test_api_with_two_worker_processes_serves_every_submit(stack: Stack, db: asyncpg.Pool) -> None:
    """TASKFLOW_API_WORKERS=2: uvicorn runs two API processes behind one port; every submit,
    whichever process took it, is stored and runs."""
    with stack.extra_api("api-two-processes", TASKFLOW_API_WORKERS="2") as url:
        assert len(server_processes(stack.extra[-1].pid)) == 2
        async with httpx.AsyncClient(base_url=url, headers=stack.headers, timeout=10) as client:
            created = [await submit(client, "test", {"n": n}) for n in range(20)]
            done = [await wait_for_status(client, task["id"], "succeeded") for task in created]
    assert [task["result"]["echo"]["n"] for task in done] == list(range(20))
    stored = await db.fetchval("SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[])", [t["id"] for t in created])
    assert stored == 20
