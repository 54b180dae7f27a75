"""Helpers shared by the end-to-end tests: bounded polls and problem+json checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import httpx

TASKS = "/api/v1/tasks"
JSON = dict[str, Any]


async def wait_for_status(api: httpx.AsyncClient, task_id: str, *statuses: str, within: float = 10) -> JSON:
    """Poll the task until its status is one of ``statuses``; fail with the last body after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        response = await api.get(f"{TASKS}/{task_id}")
        assert response.status_code == 200, response.text
        body: JSON = response.json()
        if body["status"] in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} not {'/'.join(statuses)} within {within}s: {body}")
        await asyncio.sleep(0.05)


async def wait_until(check: Callable[[], Awaitable[bool]], *, within: float, what: str, every: float = 0.05) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(every)


async def submit(api: httpx.AsyncClient, task_type: str, payload: JSON, **options: Any) -> JSON:
    """Submit a task that must be accepted; return its body."""
    response = await api.post(TASKS, json={"task_type": task_type, "payload": payload, **options})
    assert response.status_code == 202, response.text
    body: JSON = response.json()
    return body


def assert_problem(response: httpx.Response, status: int, *fields: str) -> JSON:
    """An RFC 9457 problem with ``status``; with ``fields``, its ``errors`` list names each of them."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: JSON = response.json()
    for key, kind in (("type", str), ("title", str), ("status", int), ("detail", str)):
        assert isinstance(body.get(key), kind), f"{key} missing from {body}"
    assert body["status"] == status
    if fields:
        assert isinstance(body.get("errors"), list), body
        named = {error["field"] for error in body["errors"]}
        for wanted in fields:  # "status" also matches "status.0", the first of a repeated parameter
            assert any(n == wanted or n.startswith(f"{wanted}.") for n in named), (
                f"expected errors naming {wanted!r}, got {body['errors']}"
            )
    return body


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp as returned by the API (always UTC)."""
    parsed = datetime.fromisoformat(value)
    offset = parsed.utcoffset()
    assert offset is not None, f"{value} has no UTC offset"
    assert offset.total_seconds() == 0, f"{value} is not UTC"
    return parsed


async def count_tasks(db: asyncpg.Pool) -> int:
    return int(await db.fetchval("SELECT count(*) FROM tasks"))


async def task_row(db: asyncpg.Pool, task_id: str) -> asyncpg.Record:
    row: asyncpg.Record | None = await db.fetchrow("SELECT * FROM tasks WHERE id = $1::uuid", task_id)
    assert row is not None, f"task {task_id} is not stored"
    return row
