"""POST /api/v1/tasks/batch against the real processes: all or nothing, one answer per task."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import TASKS, assert_problem, count_tasks, task_row, wait_for_status, wait_until
from tests.e2e.conftest import CLOSED_PORT, Stack

pytestmark = pytest.mark.e2e

BATCH = f"{TASKS}/batch"


async def test_a_batch_is_stored_enqueued_and_run(api: httpx.AsyncClient) -> None:
    body = {
        "tasks": [
            {"task_type": "test", "payload": {"n": 1}},
            {"task_type": "sleep", "payload": {"seconds": 0.1}, "priority": 3},
            {"task_type": "test", "payload": {"n": 3}, "delay_seconds": 3600},
        ]
    }
    response = await api.post(BATCH, json=body)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["count"] == 3
    assert [item["status"] for item in answer["items"]] == ["queued", "queued", "scheduled"]
    assert all(item["location"] == f"{TASKS}/{item['id']}" for item in answer["items"])
    first = await wait_for_status(api, answer["items"][0]["id"], "succeeded", within=30)
    assert first["result"]["echo"]["n"] == 1
    second = await wait_for_status(api, answer["items"][1]["id"], "succeeded", within=30)
    assert second["priority"] == 3
    later = await api.get(answer["items"][2]["location"])
    assert later.json()["status"] == "scheduled"
    assert (await api.post(f"{TASKS}/{answer['items'][2]['id']}/cancel")).status_code == 200


async def test_one_bad_task_rejects_the_whole_batch(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    before = await count_tasks(db)
    body = {
        "tasks": [
            {"task_type": "test", "payload": {}},
            {"task_type": "no.such.type", "payload": {}},
            {"task_type": "sleep", "payload": {"seconds": "long"}},
            {"task_type": "test", "payload": {}, "max_retries": 10_000},
        ]
    }
    problem = assert_problem(
        await api.post(BATCH, json=body), 422, "tasks.1.task_type", "tasks.2.payload.seconds", "tasks.3.max_retries"
    )
    assert sorted({e["index"] for e in problem["errors"]}) == [1, 2, 3]
    assert await count_tasks(db) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tasks": [{"task_type": "test", "payload": {}, "priority": 99}]}, "tasks.0.priority"),
        ({"tasks": []}, "tasks"),
        ({"tasks": [{"task_type": "test", "payload": {}}] * 1001}, "tasks"),
        ({"tasks": [{"task_type": "test"}]}, "tasks.0.payload"),
    ],
)
async def test_malformed_batches_name_the_field(
    api: httpx.AsyncClient, db: asyncpg.Pool, body: dict[str, object], field: str
) -> None:
    before = await count_tasks(db)
    assert_problem(await api.post(BATCH, json=body), 422, field)
    assert await count_tasks(db) == before


async def test_postgres_down_is_503_and_stores_nothing(stack: Stack, db: asyncpg.Pool) -> None:
    before = await count_tasks(db)
    down = f"postgresql://postgres@127.0.0.1:{CLOSED_PORT}/taskflow"
    with stack.extra_api("api-batch-no-pg", TASKFLOW_DATABASE_URL=down) as url:
        async with httpx.AsyncClient(base_url=url, headers=stack.headers, timeout=15) as degraded:
            response = await degraded.post(BATCH, json={"tasks": [{"task_type": "test", "payload": {}}] * 5})
    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    assert await count_tasks(db) == before


async def test_redis_down_stores_the_batch_and_loses_nothing(
    stack: Stack, api: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    with stack.extra_api("api-batch-no-redis", TASKFLOW_REDIS_URL=f"redis://127.0.0.1:{CLOSED_PORT}/0") as url:
        async with httpx.AsyncClient(base_url=url, headers=stack.headers, timeout=15) as degraded:
            response = await degraded.post(
                BATCH, json={"tasks": [{"task_type": "test", "payload": {"k": i}} for i in range(5)]}
            )
    assert response.status_code == 202, response.text
    ids = [item["id"] for item in response.json()["items"]]
    for task_id in ids:
        assert (await task_row(db, task_id))["status"] in {"queued", "running", "succeeded"}

    async def all_done() -> bool:
        rows = await db.fetch("SELECT status FROM tasks WHERE id = ANY($1::uuid[])", ids)
        return [r["status"] for r in rows] == ["succeeded"] * 5

    # The shared stack's reconciler enqueues what the degraded API could not.
    await wait_until(all_done, within=60, what="the batch stored without Redis ran")
