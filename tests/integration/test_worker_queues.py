"""A worker consuming several queues, against real PostgreSQL and Redis: every queue drained, a
retry re-scored in its own queue, burst mode ending only when every consumed queue is empty, and
the free slots split by weight (taskcore.queue.split_room)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from taskcore.domain import Task, TaskStatus
from taskcore.queue import TaskQueue, queue_key, split_room
from taskcore.registry import TaskRegistry
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.settings import Settings
from taskflow_worker.app import create_worker
from taskflow_worker.reconciler import Reconciler
from taskflow_worker.runner import TaskRunner


async def submit(service: TaskService, task_type: str, payload: dict[str, Any], **kw: Any) -> Task:
    task, _ = await service.submit(TaskRequest(task_type=task_type, payload=payload, **kw), origin=Origin())
    return task


async def drain(settings: Settings, registry: TaskRegistry, *, within: float = 30) -> None:
    worker = create_worker(settings, registry=registry, burst=True)
    try:
        await asyncio.wait_for(worker.main(), timeout=within)
    finally:
        await worker.close()


async def test_a_worker_drains_every_queue_it_consumes_and_retries_in_the_jobs_own_queue(
    service: TaskService, settings: Settings, registry: TaskRegistry, redis: ArqRedis
) -> None:
    multi = settings.model_copy(
        update={
            "worker_queues": (("critical", 3), ("default", 1)),
            "retry_backoff_base_seconds": 3.0,
            "retry_backoff_max_seconds": 3.0,
        }
    )
    tasks = [await submit(service, "test", {"n": i}, queue="critical" if i % 2 else "default") for i in range(20)]
    # A retry in the second queue: arq's own finish_job re-scores in its queue_name (the first queue),
    # which would add a second entry there, due at once, next to the one left in "default".
    failing = await submit(service, "fail", {"times": 1}, max_retries=2, queue="default")
    worker = create_worker(multi, registry=registry, burst=True)
    run = asyncio.create_task(worker.main())
    try:
        async with asyncio.timeout(10):
            while (await service.repo.get(failing.id)).status is not TaskStatus.SCHEDULED:
                await asyncio.sleep(0.02)
        due = await service.repo.get(failing.id)
        score = await redis.zscore(queue_key(settings.queue_name, "default"), str(failing.id))
        assert score is not None, "the deferred retry left its own queue"
        assert abs(score - due.run_at.timestamp() * 1000) < 1000, "the retry is not due at its backoff time"
        assert await redis.zscore(queue_key(settings.queue_name, "critical"), str(failing.id)) is None
        await asyncio.wait_for(run, timeout=20)
    finally:
        run.cancel()
        await worker.close()
    finished = [await service.repo.get(t.id) for t in [*tasks, failing]]
    assert {t.status for t in finished} == {TaskStatus.SUCCEEDED}
    assert finished[-1].attempt == 2
    for name in ("critical", "default"):
        key = queue_key(settings.queue_name, name)
        assert await redis.zcard(key) == 0, f"jobs left behind in {key}"


async def test_burst_ends_only_when_every_consumed_queue_is_empty(
    service: TaskService, settings: Settings, registry: TaskRegistry
) -> None:
    multi = settings.model_copy(update={"worker_queues": (("default", 1), ("late", 1))})
    first = await submit(service, "test", {"n": 0})
    # Due in a second, in the second queue: a worker that looked only at its first queue would stop first.
    later = await submit(service, "test", {"n": 1}, queue="late", delay_seconds=1)
    await drain(multi, registry)
    assert (await service.repo.get(first.id)).status is TaskStatus.SUCCEEDED
    assert (await service.repo.get(later.id)).status is TaskStatus.SUCCEEDED


async def test_a_worker_leaves_queues_it_does_not_consume(
    service: TaskService, settings: Settings, registry: TaskRegistry, queue: TaskQueue, redis: ArqRedis
) -> None:
    mine = await submit(service, "test", {"n": 0}, queue="mine")
    other = await submit(service, "test", {"n": 1}, queue="other")
    await drain(settings.model_copy(update={"worker_queues": (("mine", 1), ("default", 1))}), registry)
    assert (await service.repo.get(mine.id)).status is TaskStatus.SUCCEEDED
    assert (await service.repo.get(other.id)).status is TaskStatus.QUEUED
    assert await redis.zscore(queue.key("other"), str(other.id)) is not None


@pytest.mark.parametrize(
    ("room", "available", "expected"),
    [
        (8, [100, 100], [6, 2]),  # 3:1
        (8, [0, 100], [0, 8]),  # an idle queue's share goes to the other
        (8, [1, 100], [1, 7]),  # fewer due jobs than the share: the rest to the other
        (8, [100, 0], [8, 0]),
        (3, [1, 1], [1, 1]),  # more room than work
    ],
)
def test_free_slots_are_split_by_weight(room: int, available: list[int], expected: list[int]) -> None:
    assert split_room(room, [3, 1], available, [0, 0]) == expected


def test_one_slot_at_a_time_still_serves_every_queue_by_weight() -> None:
    credit = [0, 0]
    got = [0, 0]
    for _ in range(400):
        for index, share in enumerate(split_room(1, [3, 1], [50, 50], credit)):
            got[index] += share
    assert got == [300, 100]


# -- the worker and admission ----------------------------------------------------------------------


async def test_a_retry_under_a_limit_key_is_left_to_the_admitter(
    service: TaskService, settings: Settings, registry: TaskRegistry, redis: ArqRedis, queue: TaskQueue
) -> None:
    runner = TaskRunner(repo=service.repo, registry=registry, settings=settings, worker_id="w")
    task = await submit(service, "fail", {"times": 1}, max_retries=2, limit_keys=["retry-key"])
    assert (await service.repo.get(task.id)).admitted  # the submit ran an admission round
    await runner.run(task.id)  # no defer raised: the job ends here
    after = await service.repo.get(task.id)
    assert (after.status, after.admitted) == (TaskStatus.SCHEDULED, False)
    assert runner.slot_freed.is_set(), "the end of a run under a key wakes the admission loop"
    # The admitter takes it when due, into Redis again; it then runs.
    async with asyncio.timeout(5):
        while await service.flow.admit() == 0:
            await asyncio.sleep(0.05)
    assert await redis.zscore(queue.key("default"), str(task.id)) is not None
    await runner.run(task.id)
    assert (await service.repo.get(task.id)).status is TaskStatus.SUCCEEDED


async def test_a_delivery_of_a_task_that_is_not_admitted_is_dropped_not_deferred(
    service: TaskService, settings: Settings, registry: TaskRegistry
) -> None:
    runner = TaskRunner(repo=service.repo, registry=registry, settings=settings, worker_id="w")
    await service.flow.pause("queue", "held")
    try:
        task = await submit(service, "test", {"n": 1}, queue="held", delay_seconds=30)
        await runner.run(task.id)  # an early delivery of an admitted task would raise arq's defer here
        assert (await service.repo.get(task.id)).status is TaskStatus.SCHEDULED
    finally:
        await service.flow.resume("queue", "held")


async def test_the_reconciler_hands_a_dead_workers_keyed_task_to_the_admitter(
    service: TaskService,
    settings: Settings,
    registry: TaskRegistry,
    redis: ArqRedis,
    queue: TaskQueue,
    pool: asyncpg.Pool,
) -> None:
    task = await submit(service, "test", {"n": 1}, limit_keys=["dead-key"])
    assert (await service.repo.get(task.id)).admitted  # the submit ran an admission round
    assert await service.repo.claim(task.id, worker_id="dead", lease_seconds=30)
    await redis.set(in_progress_key_prefix + str(task.id), b"1", px=3_600_000)
    await pool.execute("UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = $1", task.id)
    reconciler = Reconciler(repo=service.repo, queue=queue, settings=settings)
    assert (await reconciler.tick()).recovered == 1
    recovered = await service.repo.get(task.id)
    assert (recovered.status, recovered.admitted) == (TaskStatus.SCHEDULED, False)
    # Its old job is gone (a job left marked in progress would refuse the admitter's enqueue).
    assert await redis.zscore(queue.key("default"), str(task.id)) is None
    assert await redis.exists(in_progress_key_prefix + str(task.id)) == 0
    assert await service.flow.admit() == 1
    await drain(settings, registry)
    done = await service.repo.get(task.id)
    assert (done.status, done.attempt) == (TaskStatus.SUCCEEDED, 2)
