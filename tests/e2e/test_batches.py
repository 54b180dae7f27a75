"""Batches through the real processes: a batch runs, its on_complete task runs once and sees the
counts; an API SIGKILLed while it stores a large batch, then the same batch sent again with the
same Idempotency-Key, ends with each task stored exactly once."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_cli import as_json, run

pytestmark = pytest.mark.e2e

BATCH = "/api/v1/tasks/batch"


async def wait_batch(api: httpx.AsyncClient, batch_id: str, *, within: float = 60) -> dict[str, Any]:
    """The batch once it finished and its on_complete task (if any) ended."""
    deadline = time.monotonic() + within
    while True:
        body: dict[str, Any] = (await api.get(f"/api/v1/batches/{batch_id}")).json()
        callback = body["on_complete"]
        if body["finished"] and (callback is None or callback["status"] in ("succeeded", "failed", "cancelled")):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} not done after {within}s: {body}")
        await asyncio.sleep(0.1)


async def test_a_batch_runs_and_on_complete_runs_once_seeing_the_counts(api: httpx.AsyncClient, tmp_path: Path) -> None:
    runs = tmp_path / "callback.log"
    tasks = [
        {"task_type": "e2e.step", "payload": {"name": f"s{i}", "fail": i % 10 == 0}, "max_retries": 0}
        for i in range(30)
    ]
    body = {"tasks": tasks, "on_complete": {"task_type": "e2e.batch_done", "payload": {"path": str(runs)}}}
    response = await api.post(BATCH, json=body)
    assert response.status_code == 202, response.text
    batch_id = response.json()["batch_id"]
    done = await wait_batch(api, batch_id)
    assert done["total"] == 30
    assert done["counts"]["succeeded"] == 27
    assert done["counts"]["failed"] == 3
    assert done["on_complete"]["status"] == "succeeded"
    callback = (await api.get(f"/api/v1/tasks/{done['on_complete']['task_id']}")).json()
    assert callback["completes_batch"] == batch_id
    seen = callback["result"]["batch"]
    assert seen["id"] == batch_id
    assert seen["total"] == 30
    # It ran after every task had ended: the counts it saw are the final ones.
    assert seen["counts"]["succeeded"] == 27
    assert seen["counts"]["failed"] == 3
    await asyncio.sleep(1.5)  # a second run would show here (the reconciler ticks every 0.5 s)
    assert runs.read_text().splitlines() == ["done"]


@pytest.mark.timeout(400)  # each round starts an API again (slow on a busy machine)
async def test_an_api_killed_mid_batch_then_a_resend_stores_each_task_once(isolated_stack: Stack) -> None:
    """SIGKILL the API at several moments of a 1,000-task batch (before, while and after it
    stores it); the client sends the batch again with the same Idempotency-Key to a fresh API:
    either the first one committed and is replayed, or nothing of it was stored and it is stored now."""
    stack = isolated_stack
    stack.env["TASKFLOW_SUBMIT_RATE_PER_SECOND"] = "0"  # each round sends 2,000 tasks at once
    assert stack.api is not None
    stack.api.send_signal(signal.SIGTERM)
    await asyncio.to_thread(stack.api.wait, 30)
    await asyncio.to_thread(stack.start_api)
    db = await asyncpg.connect(stack.env["TASKFLOW_DATABASE_URL"])
    body = {
        "tasks": [{"task_type": "test", "payload": {"message": f"m{i}"}} for i in range(1000)],
        "on_complete": {"task_type": "test", "payload": {"message": "done"}},
    }
    outcomes = []
    try:
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=30) as api:
            # None: the moment PostgreSQL shows the API's backend inserting the batch's tasks
            # (mid-transaction); then fixed delays, before, during and after the commit.
            for round_, delay in enumerate((None, 0.1, 0.35, 0.7)):
                key = f"killed-{round_}"
                sending = asyncio.create_task(api.post(BATCH, json=body, headers={"Idempotency-Key": key}))
                if delay is None:
                    await _storing(db)
                else:
                    await asyncio.sleep(delay)
                assert stack.api is not None
                stack.api.send_signal(signal.SIGKILL)
                await asyncio.to_thread(stack.api.wait, 10)
                try:
                    first = await sending
                    outcomes.append(f"answered {first.status_code}")
                except httpx.TransportError:
                    first = None
                    outcomes.append("cut")
                before = await _stored_on(db, key)
                if delay is None:  # killed inside its transaction: nothing of it is left
                    assert before == (0, 0)
                await asyncio.to_thread(stack.start_api)
                again = await api.post(BATCH, json=body, headers={"Idempotency-Key": key})
                assert again.status_code == 202, again.text
                if before[0]:  # the first request committed: the resend is its replay
                    assert again.headers.get("Idempotent-Replayed") == "true"
                if first is not None and first.status_code == 202:
                    assert again.json() == first.json()
                assert await _stored_on(db, key) == (1, 1000), (round_, delay)
                ids = [i["id"] for i in again.json()["items"]]
                assert len(set(ids)) == 1000
                assert await db.fetchval("SELECT count(*) FROM tasks WHERE batch_id IS NOT NULL") == 1000 * (round_ + 1)
    finally:
        await db.close()
    print("outcomes:", outcomes)  # shown with -s: how many rounds the kill cut


async def _storing(db: asyncpg.Connection, *, within: float = 30) -> None:
    """Until another session of this database is running the batch's INSERT INTO tasks."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        busy = await db.fetchval(
            """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%INSERT INTO tasks%'"""
        )
        if busy:
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the batch's insert was never seen running")


async def _stored_on(db: asyncpg.Connection, key: str) -> tuple[int, int]:
    row = await db.fetchrow(
        """SELECT (SELECT count(*) FROM batches WHERE idempotency_key = $1) AS b,
                  (SELECT count(*) FROM tasks t JOIN batches b ON b.id = t.batch_id
                    WHERE b.idempotency_key = $1) AS t""",
        key,
    )
    return int(row["b"]), int(row["t"])


async def test_the_cli_submits_a_batch_shows_it_and_lists_its_tasks(
    stack: Stack, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    lines = tmp_path / "tasks.jsonl"
    lines.write_text(
        "\n".join(f'{{"task_type": "test", "payload": {{"message": "cli {i}"}}}}' for i in range(5)) + "\n\n"
    )
    submitted = as_json(
        await asyncio.to_thread(
            run,
            stack,
            "--json",
            "batch",
            str(lines),
            "--on-complete-type",
            "e2e.batch_done",
            "--on-complete-payload",
            '{"label": "cli"}',
            "--idempotency-key",
            "cli-batch-1",
        )
    )
    batch_id = submitted["batch_id"]
    assert submitted["count"] == 5
    again = as_json(
        await asyncio.to_thread(
            run,
            stack,
            "--json",
            "batch",
            str(lines),
            "--on-complete-type",
            "e2e.batch_done",
            "--on-complete-payload",
            '{"label": "cli"}',
            "--idempotency-key",
            "cli-batch-1",
        )
    )
    assert again == submitted
    await wait_batch(api, batch_id)
    shown = as_json(await asyncio.to_thread(run, stack, "--json", "batches", "get", batch_id))
    assert shown["finished"] is True
    assert shown["counts"]["succeeded"] == 5
    assert shown["on_complete"]["status"] == "succeeded"
    human = await asyncio.to_thread(run, stack, "batches", "get", batch_id)
    assert human.returncode == 0, human.stderr
    assert "finished" in human.stdout
    listed = as_json(await asyncio.to_thread(run, stack, "--json", "list", "--batch", batch_id))
    assert {t["id"] for t in listed["items"]} == {i["id"] for i in submitted["items"]}
    bad = await asyncio.to_thread(run, stack, "batch", "-", stdin="not json\n")
    assert bad.returncode != 0
    parent = submitted["items"][0]["id"]
    child = as_json(
        await asyncio.to_thread(
            run, stack, "--json", "submit", "test", "-p", '{"message": "child"}', "--depends-on", parent, "--wait"
        )
    )
    assert child["depends_on"] == [parent]
    assert child["status"] == "succeeded"
