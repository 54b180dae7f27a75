"""TaskService: validation stores nothing; PostgreSQL first, the queue after, and outages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis

from taskcore.domain import Task, TaskStatus
from taskcore.errors import DependencyUnavailable, IdempotencyConflict, PayloadTooLarge, TaskValidationError
from taskcore.queue import TaskQueue, connect
from taskcore.registry import TaskRegistry
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository, create_pool

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"
CLOSED_PORT_PG = "postgresql://postgres@127.0.0.1:1/nowhere"
NOWHERE = Origin()  # submitted by the test, not through the API


async def count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM tasks"))


async def test_submit_stores_and_enqueues(service: TaskService, redis: ArqRedis, settings: Settings) -> None:
    task, created = await service.submit(
        TaskRequest(task_type="test", payload={"message": "Hello"}, priority=3), origin=NOWHERE
    )
    assert created
    assert task.status is TaskStatus.QUEUED
    assert (task.max_retries, task.timeout_seconds) == (settings.default_max_retries, settings.default_timeout_seconds)
    assert await redis.zscore(settings.queue_name, str(task.id)) is not None


async def test_delay_makes_a_scheduled_task(service: TaskService) -> None:
    task, _ = await service.submit(TaskRequest(task_type="test", payload={}, delay_seconds=120), origin=NOWHERE)
    assert task.status is TaskStatus.SCHEDULED
    assert timedelta(seconds=119) < task.run_at - task.created_at < timedelta(seconds=121)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"task_type": "nope", "payload": {}}, "task_type"),
        ({"task_type": "sleep", "payload": {"seconds": "long"}}, "payload.seconds"),
        ({"task_type": "sleep", "payload": {}}, "payload.seconds"),
        ({"task_type": "test", "payload": {}, "max_retries": 10_000}, "max_retries"),
        ({"task_type": "test", "payload": {}, "timeout_seconds": 10**7}, "timeout_seconds"),
        ({"task_type": "test", "payload": {}, "delay_seconds": 10**9}, "delay_seconds"),
        ({"task_type": "test", "payload": {}, "run_at": datetime(2999, 1, 1, tzinfo=UTC)}, "run_at"),
    ],
)
async def test_invalid_submits_store_nothing(
    service: TaskService, pool: asyncpg.Pool, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(TaskValidationError) as err:
        await service.submit(TaskRequest(**kwargs), origin=NOWHERE)
    assert [e["field"] for e in err.value.errors] == [field]
    assert await count(pool) == 0


async def test_oversize_payload_is_refused(service: TaskService, pool: asyncpg.Pool, settings: Settings) -> None:
    with pytest.raises(PayloadTooLarge):
        await service.submit(
            TaskRequest(task_type="test", payload={"message": "x" * settings.payload_limit_bytes}), origin=NOWHERE
        )
    assert await count(pool) == 0


async def test_idempotent_repeat_returns_the_original(service: TaskService, pool: asyncpg.Pool) -> None:
    request = TaskRequest(task_type="test", payload={"a": 1})
    first, created = await service.submit(request, origin=NOWHERE, idempotency_key="order-1")
    again, created_again = await service.submit(request, origin=NOWHERE, idempotency_key="order-1")
    assert created
    assert not created_again
    assert again.id == first.id
    assert await count(pool) == 1


async def test_idempotency_compares_what_the_client_sent(service: TaskService) -> None:
    async def submit(**fields: Any) -> tuple[Task, bool]:
        return await service.submit(TaskRequest(task_type="test", **fields), origin=NOWHERE, idempotency_key="k")

    first, _ = await submit(payload={"a": 1, "b": 2}, delay_seconds=30)
    reordered, created = await submit(payload={"b": 2, "a": 1}, delay_seconds=30)
    assert not created
    assert reordered.id == first.id
    with pytest.raises(IdempotencyConflict):
        await submit(payload={"a": 1, "b": 2}, delay_seconds=31)
    with pytest.raises(IdempotencyConflict):
        await submit(payload={"a": 1, "b": 2}, delay_seconds=30, max_retries=0)


@pytest.fixture
async def redis_down_service(
    repo: TaskRepository, registry: TaskRegistry, settings: Settings
) -> AsyncIterator[TaskService]:
    queue = TaskQueue(connect(CLOSED_PORT_REDIS, queue_name=settings.queue_name, timeout=0.5))
    yield TaskService(repo=repo, queue=queue, registry=registry, settings=settings)
    await queue.close()


async def test_redis_down_still_stores_the_task(redis_down_service: TaskService) -> None:
    """Stored is what counts: the reconciler enqueues it when Redis is back."""
    task, created = await redis_down_service.submit(TaskRequest(task_type="test", payload={}), origin=NOWHERE)
    assert created
    assert (await redis_down_service.repo.get(task.id)).status is TaskStatus.QUEUED
    with pytest.raises(DependencyUnavailable, match="redis"):
        await redis_down_service.queue.ping()


async def test_postgres_down_is_dependency_unavailable_and_enqueues_nothing(
    queue: TaskQueue, registry: TaskRegistry, settings: Settings, redis: ArqRedis
) -> None:
    pool = await create_pool(CLOSED_PORT_PG)
    try:
        service = TaskService(repo=TaskRepository(pool), queue=queue, registry=registry, settings=settings)
        with pytest.raises(DependencyUnavailable, match="postgresql"):
            await service.submit(TaskRequest(task_type="test", payload={}), origin=NOWHERE)
    finally:
        await pool.close()
    assert await redis.zcard(settings.queue_name) == 0
