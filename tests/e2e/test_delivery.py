"""Delivery guarantees: many concurrent submits each run exactly once; a duplicate arq job changes nothing."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis

from taskcore.queue import RUN_TASK
from tests.e2e._helpers import TASKS, submit, task_row, wait_for_status, wait_until
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

CONCURRENT = 200


async def test_concurrent_submits_each_run_exactly_once(stack: Stack, db: asyncpg.Pool) -> None:
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=30, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post(TASKS, json={"task_type": "test", "payload": {"message": f"burst {n}"}})
                for n in range(CONCURRENT)
            )
        )
    assert [r.status_code for r in responses] == [202] * CONCURRENT
    ids = [uuid.UUID(r.json()["id"]) for r in responses]
    assert len(set(ids)) == CONCURRENT

    async def all_succeeded() -> bool:
        done = await db.fetchval("SELECT count(*) FROM tasks WHERE id = ANY($1) AND status = 'succeeded'", ids)
        return bool(done == CONCURRENT)

    await wait_until(all_succeeded, within=30, what=f"all {CONCURRENT} tasks succeeded", every=0.1)
    rows = await db.fetch("SELECT id, attempt, result, payload FROM tasks WHERE id = ANY($1)", ids)
    assert len(rows) == CONCURRENT
    assert {r["attempt"] for r in rows} == {1}, "some task was claimed more than once"
    for row in rows:
        assert row["result"]["echo"] == row["payload"]


async def test_duplicate_delivery_after_success_changes_nothing(
    api: httpx.AsyncClient, db: asyncpg.Pool, arq_redis: ArqRedis, stack: Stack
) -> None:
    created = await submit(api, "test", {"message": "only once"})
    await wait_for_status(api, created["id"], "succeeded")
    before = await task_row(db, created["id"])

    queue = stack.env["TASKFLOW_QUEUE_NAME"]
    job = await arq_redis.enqueue_job(RUN_TASK, created["id"], _job_id=created["id"], _queue_name=queue)
    assert job is not None, "the finished task's arq job was still there"

    async def processed() -> bool:
        return await arq_redis.zscore(queue, created["id"]) is None

    await wait_until(processed, within=10, what="the worker took the duplicate job off the queue")
    await asyncio.sleep(0.2)  # anything the delivery wrote would be committed by now
    after = await task_row(db, created["id"])
    for column in ("status", "attempt", "started_at", "finished_at", "updated_at", "result", "error", "worker_id"):
        assert after[column] == before[column], column


async def test_duplicate_delivery_of_a_failed_task_changes_nothing(
    api: httpx.AsyncClient, db: asyncpg.Pool, arq_redis: ArqRedis, stack: Stack
) -> None:
    created = await submit(api, "fail", {"times": -1}, max_retries=0)
    await wait_for_status(api, created["id"], "failed")
    before = await task_row(db, created["id"])

    queue = stack.env["TASKFLOW_QUEUE_NAME"]
    assert await arq_redis.enqueue_job(RUN_TASK, created["id"], _job_id=created["id"], _queue_name=queue)

    async def processed() -> bool:
        return await arq_redis.zscore(queue, created["id"]) is None

    await wait_until(processed, within=10, what="the worker took the duplicate job off the queue")
    await asyncio.sleep(0.2)
    after = await task_row(db, created["id"])
    assert dict(after) == dict(before)
