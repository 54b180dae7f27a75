"""Unique tasks over the real PostgreSQL: one task per unique_key while it waits or runs, or
within its window, whatever the number of concurrent submits; nothing stored for a duplicate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from taskcore.settings import Settings
from tests.e2e._helpers import assert_problem
from tests.integration.test_api import make_client  # noqa: F401 - the fixture

TASKS = "/api/v1/tasks"


@pytest.fixture(autouse=True)
async def _no_keys(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await pool.execute("TRUNCATE unique_keys")


@pytest.fixture
async def api(make_client: Any, settings: Settings) -> httpx.AsyncClient:  # noqa: F811
    client: httpx.AsyncClient = await make_client(settings)
    return client


def body(key: str, **extra: Any) -> dict[str, Any]:
    return {"task_type": "test", "payload": {"message": "hi"}, "unique_key": key, **extra}


async def finish(pool: asyncpg.Pool, task_id: str, status: str = "succeeded") -> None:
    await pool.execute(
        "UPDATE tasks SET status = $2, finished_at = clock_timestamp() WHERE id = $1", UUID(task_id), status
    )


async def test_twenty_concurrent_submits_store_one_task(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    answers = await asyncio.gather(*(api.post(TASKS, json=body("report:42")) for _ in range(20)))
    created = [a for a in answers if a.status_code == 202]
    duplicates = [a for a in answers if a.status_code == 200]
    assert len(created) == 1, [a.text for a in answers]
    assert len(duplicates) == 19
    holder = created[0].json()["id"]
    assert {d.headers["TaskFlow-Duplicate-Of"] for d in duplicates} == {holder}
    assert {d.json()["id"] for d in duplicates} == {holder}
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE unique_key = 'report:42'") == 1


async def test_the_key_is_free_once_the_task_ends_without_a_window(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    first = (await api.post(TASKS, json=body("k1"))).json()
    assert (await api.post(TASKS, json=body("k1"))).status_code == 200
    await pool.execute("UPDATE tasks SET status = 'running' WHERE id = $1", UUID(first["id"]))
    assert (await api.post(TASKS, json=body("k1"))).status_code == 200  # running holds it too
    await finish(pool, first["id"], "failed")
    again = await api.post(TASKS, json=body("k1"))
    assert again.status_code == 202
    assert again.json()["id"] != first["id"]
    assert again.json()["unique_key"] == "k1"


async def test_a_window_holds_the_key_after_the_task_ended_and_then_lets_go(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    first = (await api.post(TASKS, json=body("k2", unique_for_seconds=2))).json()
    await finish(pool, first["id"])
    held = await api.post(TASKS, json=body("k2"))  # a submit without a window still meets the holder's
    assert held.status_code == 200
    assert held.headers["TaskFlow-Duplicate-Of"] == first["id"]
    await asyncio.sleep(2.1)
    assert (await api.post(TASKS, json=body("k2"))).status_code == 202
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE unique_key = 'k2'") == 2


async def test_a_unique_task_and_an_idempotency_key(api: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "once-k3"}
    first = await api.post(TASKS, json=body("k3"), headers=headers)
    assert first.status_code == 202
    replay = await api.post(TASKS, json=body("k3"), headers=headers)
    assert replay.status_code == 202  # the same request again: an Idempotency-Key replay
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = await api.post(TASKS, json=body("k3"), headers={"Idempotency-Key": "twice-k3"})
    assert other.status_code == 200  # another request for the key: a duplicate
    assert other.json()["id"] == first.json()["id"]


async def test_batch_items_with_keys(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    holder = (await api.post(TASKS, json=body("b1"))).json()
    items = [body("b1"), body("b2"), {"task_type": "test", "payload": {"message": "plain"}}, body("b2")]
    answer = await api.post(f"{TASKS}/batch", json={"tasks": items})
    assert answer.status_code == 202, answer.text
    got = answer.json()["items"]
    assert got[0]["id"] == holder["id"]
    assert got[0]["duplicate_of"] == holder["id"]
    assert "duplicate_of" not in got[1]
    assert "duplicate_of" not in got[2]
    assert got[3]["duplicate_of"] == got[1]["id"]  # a later item with an earlier item's key
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 3


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"unique_key": "has space"}, "unique_key"),
        ({"unique_key": "x" * 201}, "unique_key"),
        ({"unique_key": "ok", "unique_for_seconds": -1}, "unique_for_seconds"),
        ({"unique_key": "ok", "unique_for_seconds": "soon"}, "unique_for_seconds"),
    ],
)
async def test_bad_unique_options_are_422_and_store_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, extra: dict[str, Any], field: str
) -> None:
    assert_problem(await api.post(TASKS, json={"task_type": "test", "payload": {}, **extra}), 422, field)
    batch = {
        "tasks": [{"task_type": "test", "payload": {"message": "a"}}, {"task_type": "test", "payload": {}, **extra}]
    }
    assert_problem(await api.post(f"{TASKS}/batch", json=batch), 422, f"tasks.1.{field}")
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 0


async def test_retrying_a_task_whose_key_is_held_again_is_409(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    first = (await api.post(TASKS, json=body("k4"))).json()
    await finish(pool, first["id"], "failed")
    second = (await api.post(TASKS, json=body("k4"))).json()
    assert second["id"] != first["id"]
    assert_problem(await api.post(f"{TASKS}/{first['id']}/retry"), 409)
    await finish(pool, second["id"])
    assert (await api.post(f"{TASKS}/{first['id']}/retry")).status_code == 202
