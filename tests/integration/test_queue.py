"""TaskQueue against the real Redis: one job per task, priority order, removal, lost-job detection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix

from taskcore.queue import TaskQueue
from tests.conftest import purge_queue


@pytest.fixture
async def new_id(redis: ArqRedis, queue: TaskQueue) -> AsyncIterator[Callable[[], UUID]]:
    """Ids for jobs that have no task row: the session cleanup cannot find them, so this does."""
    made: list[UUID] = []

    def make() -> UUID:
        made.append(uuid4())
        return made[-1]

    yield make
    await purge_queue(redis, queue.queue_name, made)


async def test_one_job_per_task(queue: TaskQueue, redis: ArqRedis, new_id: Callable[[], UUID]) -> None:
    task_id = new_id()
    now = datetime.now(UTC)
    assert await queue.enqueue(task_id, run_at=now)
    assert not await queue.enqueue(task_id, run_at=now)
    assert await redis.zcard(queue.queue_name) == 1
    assert await redis.exists(job_key_prefix + str(task_id))


async def test_due_tasks_are_ordered_by_priority_then_age(
    queue: TaskQueue, redis: ArqRedis, new_id: Callable[[], UUID]
) -> None:
    now = datetime.now(UTC)
    low_old, high, low_new = new_id(), new_id(), new_id()
    await queue.enqueue(low_old, run_at=now - timedelta(seconds=5), priority=0)
    await queue.enqueue(high, run_at=now, priority=5)
    await queue.enqueue(low_new, run_at=now, priority=0)
    order = [m.decode() for m in await redis.zrange(queue.queue_name, 0, -1)]
    assert order[0] == str(high)
    assert set(order[1:]) == {str(low_old), str(low_new)}


async def test_delayed_tasks_wait_for_their_time(queue: TaskQueue, redis: ArqRedis, new_id: Callable[[], UUID]) -> None:
    task_id = new_id()
    later = datetime.now(UTC) + timedelta(minutes=10)
    await queue.enqueue(task_id, run_at=later, priority=9)
    score = await redis.zscore(queue.queue_name, str(task_id))
    assert score is not None
    assert abs(score / 1000 - later.timestamp()) < 0.01
    assert await redis.pttl(job_key_prefix + str(task_id)) > 10 * 60 * 1000


async def test_remove_and_abort(queue: TaskQueue, redis: ArqRedis, new_id: Callable[[], UUID]) -> None:
    task_id = new_id()
    await queue.enqueue(task_id, run_at=datetime.now(UTC))
    await queue.remove(task_id)
    assert await redis.zcard(queue.queue_name) == 0
    assert not await redis.exists(job_key_prefix + str(task_id))
    await queue.abort(task_id)
    assert await redis.zscore(abort_jobs_ss, str(task_id)) is not None
    await redis.zrem(abort_jobs_ss, str(task_id))


async def test_missing_finds_tasks_without_a_job(queue: TaskQueue, new_id: Callable[[], UUID]) -> None:
    present, lost = new_id(), new_id()
    await queue.enqueue(present, run_at=datetime.now(UTC))
    assert await queue.missing([present, lost]) == [lost]
    assert await queue.missing([]) == []


async def test_requeue_stale_clears_a_dead_workers_in_progress_mark(
    queue: TaskQueue, redis: ArqRedis, new_id: Callable[[], UUID]
) -> None:
    task_id = new_id()
    await queue.enqueue(task_id, run_at=datetime.now(UTC))
    await redis.set(in_progress_key_prefix + str(task_id), b"1", px=3_600_000)
    await queue.requeue_stale(task_id, run_at=datetime.now(UTC))
    assert not await redis.exists(in_progress_key_prefix + str(task_id))
    assert await redis.zcard(queue.queue_name) == 1


async def test_a_named_queue_is_its_own_sorted_set(queue: TaskQueue, redis: ArqRedis) -> None:
    other = f"{queue.queue_name}:other"
    task_id, kept = uuid4(), uuid4()
    try:
        assert await queue.enqueue(task_id, run_at=datetime.now(UTC), queue="other")
        assert await queue.enqueue(kept, run_at=datetime.now(UTC), queue="other")
        assert await redis.zscore(other, str(task_id)) is not None
        assert await redis.zscore(queue.queue_name, str(task_id)) is None
        await queue.remove(task_id, queue="other")
        assert await redis.zrange(other, 0, -1) == [str(kept).encode()]
        assert not await redis.exists(job_key_prefix + str(task_id))
        await queue.purge([kept])  # the queue and its tasks' keys, nothing else
        assert not await redis.exists(other, job_key_prefix + str(kept))
    finally:
        await queue.purge([task_id, kept])
