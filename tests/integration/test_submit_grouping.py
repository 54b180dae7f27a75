"""Plain single submits in flight together share one INSERT and one enqueue (TaskService.submit_one),
and each caller still gets its own task, its own origin and its own error; a submit alone takes the
single INSERT it always did."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest
from arq.connections import ArqRedis

from taskcore.domain import NewTask, Task, TaskStatus
from taskcore.queue import TaskQueue, connect
from taskcore.registry import TaskRegistry
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


class CountingRepository(TaskRepository):
    """The real repository, counting the grouped INSERTs and their sizes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.groups: list[int] = []

    async def insert_each(self, news: Sequence[NewTask]) -> list[Task]:
        self.groups.append(len(news))
        return await super().insert_each(news)


@pytest.fixture
def counting(pool: asyncpg.Pool, queue: TaskQueue, registry: TaskRegistry, settings: Settings) -> TaskService:
    return TaskService(repo=CountingRepository(pool), queue=queue, registry=registry, settings=settings)


async def test_concurrent_submits_share_statements_and_keep_their_origin(
    counting: TaskService, pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    count = 60
    done = await asyncio.gather(
        *(
            counting.submit_one(
                TaskRequest(task_type="test", payload={"n": i}, priority=i % 3),
                origin=Origin(request_id=f"req-{i}", traceparent=f"00-{i:032x}-{i:016x}-01"),
            )
            for i in range(count)
        )
    )
    assert all(d.created and not d.duplicate for d in done)
    assert [d.task.payload for d in done] == [{"n": i} for i in range(count)]  # each caller its own task
    groups = counting.repo.groups  # type: ignore[attr-defined]
    assert sum(groups) == count - 1  # the first found none in flight: its own INSERT; the others grouped
    assert len(groups) < count - 1  # fewer statements than submits
    rows = {r["id"]: r for r in await pool.fetch("SELECT id, request_id, traceparent, priority, status FROM tasks")}
    assert len(rows) == count
    for i, d in enumerate(done):
        row = rows[d.task.id]
        assert (row["request_id"], row["traceparent"]) == (f"req-{i}", f"00-{i:032x}-{i:016x}-01")
        assert (row["priority"], row["status"]) == (i % 3, "queued")
        assert d.task.status is TaskStatus.QUEUED
        assert d.task.created_at == d.task.run_at
        assert await redis.zscore(settings.queue_name, str(d.task.id)) is not None  # enqueued


async def test_an_idle_submit_takes_the_single_insert(
    counting: TaskService, redis: ArqRedis, settings: Settings
) -> None:
    for n in range(3):  # one after the other: never another in flight
        done = await counting.submit_one(TaskRequest(task_type="test", payload={"n": n}), origin=Origin())
        assert done.created
        assert await redis.zscore(settings.queue_name, str(done.task.id)) is not None
    assert counting.repo.groups == []  # type: ignore[attr-defined]


async def test_a_bad_row_fails_only_its_own_submit(counting: TaskService, pool: asyncpg.Pool) -> None:
    """timeout_seconds=0 passes the service's checks (the REST schema refuses it) and breaks the table's
    CHECK: the group fails, is retried item by item, and only that caller gets the error."""
    requests = [
        TaskRequest(task_type="test", payload={"n": i}, timeout_seconds=0 if i == 3 else None) for i in range(8)
    ]
    results = await asyncio.gather(*(counting.submit_one(r, origin=Origin()) for r in requests), return_exceptions=True)
    assert isinstance(results[3], asyncpg.CheckViolationError)
    assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 3)
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 7


async def test_keyed_and_dependent_submits_keep_their_own_paths(counting: TaskService) -> None:
    first = await counting.submit_one(TaskRequest(task_type="test", payload={}), origin=Origin(), idempotency_key="k-1")
    again = await counting.submit_one(TaskRequest(task_type="test", payload={}), origin=Origin(), idempotency_key="k-1")
    assert first.created
    assert not again.created
    assert again.task.id == first.task.id
    held = await counting.submit_one(TaskRequest(task_type="test", payload={}, unique_key="u-1"), origin=Origin())
    dup = await counting.submit_one(TaskRequest(task_type="test", payload={}, unique_key="u-1"), origin=Origin())
    assert dup.duplicate
    assert dup.task.id == held.task.id
    child = await counting.submit_one(
        TaskRequest(task_type="test", payload={}, depends_on=[first.task.id]), origin=Origin()
    )
    assert child.created
    assert counting.repo.groups == []  # type: ignore[attr-defined]  # none of them went through the group


async def test_redis_down_still_stores_every_grouped_submit(
    pool: asyncpg.Pool, registry: TaskRegistry, settings: Settings
) -> None:
    queue = TaskQueue(connect(CLOSED_PORT_REDIS, queue_name=settings.queue_name, timeout=0.5))
    try:
        service = TaskService(repo=TaskRepository(pool), queue=queue, registry=registry, settings=settings)
        done = await asyncio.gather(
            *(service.submit_one(TaskRequest(task_type="test", payload={"n": i}), origin=Origin()) for i in range(5))
        )
    finally:
        await queue.close()
    assert all(d.created for d in done)
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE status = 'queued'") == 5


async def test_group_size_zero_stores_each_submit_on_its_own(
    pool: asyncpg.Pool, queue: TaskQueue, registry: TaskRegistry, settings: Settings
) -> None:
    repo = CountingRepository(pool)
    ungrouped = settings.model_copy(update={"submit_group_max_size": 0})
    service = TaskService(repo=repo, queue=queue, registry=registry, settings=ungrouped)
    done = await asyncio.gather(
        *(service.submit_one(TaskRequest(task_type="test", payload={"n": i}), origin=Origin()) for i in range(5))
    )
    assert all(d.created for d in done)
    assert repo.groups == []
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 5


async def test_grouped_submits_keep_their_callback_and_actor(counting: TaskService, pool: asyncpg.Pool) -> None:
    """The grouped INSERT stores what the single one does: each row's callback_url and actor (its history's
    creation entry names it)."""
    count = 20
    done = await asyncio.gather(
        *(
            counting.submit_one(
                TaskRequest(task_type="test", payload={"n": i}, callback_url=f"https://example.com/hook/{i}"),
                origin=Origin(actor=f"api:key-{i}"),
            )
            for i in range(count)
        )
    )
    assert sum(counting.repo.groups) == count - 1  # type: ignore[attr-defined]
    rows = {r["id"]: r for r in await pool.fetch("SELECT id, callback_url, actor FROM tasks")}
    creations = await pool.fetch("SELECT task_id, actor FROM task_history WHERE from_status IS NULL")
    created = {r["task_id"]: r["actor"] for r in creations}
    for i, d in enumerate(done):
        assert rows[d.task.id]["callback_url"] == f"https://example.com/hook/{i}"
        assert d.task.callback_url == f"https://example.com/hook/{i}"
        assert created[d.task.id] == f"api:key-{i}"
