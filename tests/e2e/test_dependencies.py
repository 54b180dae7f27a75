"""A dependency that is down: readiness says which, nothing stored is lost, nothing half-stored appears."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from tests.e2e._helpers import TASKS, assert_problem, count_tasks, task_row, wait_for_status
from tests.e2e.conftest import CLOSED_PORT, Stack

pytestmark = pytest.mark.e2e

REDIS_DOWN = f"redis://127.0.0.1:{CLOSED_PORT}/0"
POSTGRES_DOWN = f"postgresql://postgres@127.0.0.1:{CLOSED_PORT}/taskflow"


async def test_redis_down_tasks_are_stored_and_reconciled(
    stack: Stack, api: httpx.AsyncClient, db: asyncpg.Pool, arq_redis: ArqRedis
) -> None:
    with stack.extra_api("api-no-redis", TASKFLOW_REDIS_URL=REDIS_DOWN) as url:
        async with httpx.AsyncClient(base_url=url, headers=stack.headers, timeout=15) as degraded:
            assert (await degraded.get("/health")).status_code == 200

            ready = await degraded.get("/ready")
            problem = assert_problem(ready, 503)
            assert "redis" in problem["detail"]
            assert "postgresql" not in problem["detail"]
            assert problem["checks"]["postgresql"] == "ok"
            assert problem["checks"]["redis"] != "ok"
            assert int(ready.headers["Retry-After"]) > 0

            response = await degraded.post(TASKS, json={"task_type": "test", "payload": {"message": "no redis"}})
            assert response.status_code == 202, response.text
            task_id = response.json()["id"]
            assert (await task_row(db, task_id))["status"] == "queued"  # durable although not enqueued
            assert await arq_redis.exists(job_key_prefix + task_id) == 0

            # reads only need PostgreSQL
            assert (await degraded.get(f"{TASKS}/{task_id}")).status_code == 200
            assert (await degraded.get(TASKS, params={"limit": 1})).status_code == 200

    # The shared stack's worker: its reconciler finds the task without a job, enqueues it, and it runs.
    done = await wait_for_status(api, task_id, "succeeded", within=10)
    assert done["result"]["echo"] == {"message": "no redis"}
    assert done["attempt"] == 1


async def test_redis_down_cancel_still_cancels(stack: Stack, api: httpx.AsyncClient) -> None:
    created = await api.post(TASKS, json={"task_type": "test", "payload": {}, "delay_seconds": 60})
    assert created.status_code == 202
    task_id = created.json()["id"]
    with stack.extra_api("api-no-redis-cancel", TASKFLOW_REDIS_URL=REDIS_DOWN) as url:
        async with httpx.AsyncClient(base_url=url, headers=stack.headers, timeout=15) as degraded:
            response = await degraded.post(f"{TASKS}/{task_id}/cancel")
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "cancelled"
    assert (await api.get(f"{TASKS}/{task_id}")).json()["status"] == "cancelled"


async def test_postgres_down_refuses_with_503_and_enqueues_nothing(
    stack: Stack, db: asyncpg.Pool, arq_redis: ArqRedis
) -> None:
    queue = f"{stack.env['TASKFLOW_QUEUE_NAME']}:no-postgres"  # a queue of its own: anything enqueued shows
    before = await count_tasks(db)
    with stack.extra_api("api-no-postgres", TASKFLOW_DATABASE_URL=POSTGRES_DOWN, TASKFLOW_QUEUE_NAME=queue) as url:
        async with httpx.AsyncClient(base_url=url, headers=stack.headers, timeout=15) as degraded:
            assert (await degraded.get("/health")).status_code == 200

            ready = await degraded.get("/ready")
            problem = assert_problem(ready, 503)
            assert "postgresql" in problem["detail"]
            assert "redis" not in problem["detail"]
            assert problem["checks"]["redis"] == "ok"
            assert int(ready.headers["Retry-After"]) > 0

            response = await degraded.post(TASKS, json={"task_type": "test", "payload": {"message": "no db"}})
            problem = assert_problem(response, 503)
            assert "postgresql" in problem["detail"]
            assert int(response.headers["Retry-After"]) > 0

            for path in (f"{TASKS}/00000000-0000-4000-8000-000000000000", TASKS, "/api/v1/queue"):
                read = await degraded.get(path)
                assert_problem(read, 503)
                assert "Retry-After" in read.headers

            # validation needs no database: bad input is still a 422, not a 503
            assert_problem(await degraded.post(TASKS, json={"task_type": "nope", "payload": {}}), 422, "task_type")
    assert await arq_redis.exists(queue) == 0, "a job was enqueued for a task that was never stored"
    assert await count_tasks(db) == before
