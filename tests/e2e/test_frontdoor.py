"""The front door's harness (loadtest/frontdoor.py): the bare baseline app stores valid tasks, and
a short comparison against the real API measures both targets in the same run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from loadtest import frontdoor
from loadtest.procs import Resources, stop
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def resources_of(stack: Stack, logs: Path) -> Resources:
    env = stack.env
    return Resources("e2e", env["TASKFLOW_DATABASE_URL"], env["TASKFLOW_QUEUE_NAME"], env, logs)


async def test_bare_app_stores_a_task_the_worker_runs(stack: Stack, db: asyncpg.Pool, tmp_path: Path) -> None:
    bare, url = await asyncio.to_thread(frontdoor.start_bare, resources_of(stack, tmp_path))
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            answer = await client.post("/api/v1/tasks", json={"task_type": "test", "payload": {"n": 1}})
            assert answer.status_code == 202
            task_id = answer.json()["id"]
            refused = await client.post("/api/v1/tasks", json={"payload": {}})
            assert refused.status_code == 422
    finally:
        stop(bare)
    # One INSERT and one enqueue make a real task: the stack's worker runs it.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = await db.fetchval("SELECT status FROM tasks WHERE id = $1::uuid", task_id)
        if status == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert status == "succeeded"


async def test_front_door_comparison_measures_both_targets(stack: Stack, tmp_path: Path) -> None:
    assert stack.api is not None
    bare, url = await asyncio.to_thread(frontdoor.start_bare, resources_of(stack, tmp_path))
    try:
        report = await frontdoor.compare(
            {"taskflow": (stack.url, stack.api.pid), "bare": (url, bare.pid)},
            database_url=stack.env["TASKFLOW_DATABASE_URL"],
            redis_url=stack.env["TASKFLOW_REDIS_URL"],
            concurrencies=[2],
            rates=[50.0],
            seconds=1.0,
            repeats=1,
            generators=("closed",),
            headers=stack.headers,
            log=lambda _: None,
        )
    finally:
        stop(bare)
    rows = report["rows"]
    assert {(r["mode"], r["target"]) for r in rows} == {
        ("closed", "taskflow"),
        ("closed", "bare"),
        ("open", "taskflow"),
        ("open", "bare"),
    }
    for row in rows:
        assert row["answered"] > 0, row
        assert row["unanswered"] == 0, row
        assert set(row["statuses"]) == {"202"}, row
        assert row["api_cpu_ms_per_request"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    closed = next(r for r in rows if r["mode"] == "closed" and r["target"] == "taskflow")
    assert (closed["connections"], closed["generator"]) == (2, "closed")
    summary = report["summary"]
    assert summary["closed"][0]["connections"] == 2
    assert summary["closed"][0]["ratio"] > 0
    assert (summary["open"][0]["rate"], summary["open"][0]["taskflow_failures"]) == (50.0, 0)
    assert "taskflow closed closed c=2" in frontdoor.table(summary)
