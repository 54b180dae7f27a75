"""The worker side against real PostgreSQL and Redis: the runner's outcomes, a burst arq
worker draining the queue, and the reconciler repairing what Redis lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.worker import Retry

from taskcore.domain import Task, TaskStatus
from taskcore.queue import TaskQueue
from taskcore.registry import TaskRegistry
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository
from taskflow_worker.app import create_worker
from taskflow_worker.reconciler import LEADER_LOCK_KEY, Reconciler
from taskflow_worker.runner import TaskRunner
from tests import task_types
from tests.integration.conftest import new_task


@pytest.fixture
def runner(repo: TaskRepository, registry: TaskRegistry, settings: Settings) -> TaskRunner:
    return TaskRunner(repo=repo, registry=registry, settings=settings, worker_id="test-worker")


@pytest.fixture
def reconciler(repo: TaskRepository, queue: TaskQueue, settings: Settings) -> Reconciler:
    return Reconciler(repo=repo, queue=queue, settings=settings)


async def submit(service: TaskService, task_type: str, payload: dict[str, Any], **kw: Any) -> Task:
    task, _ = await service.submit(TaskRequest(task_type=task_type, payload=payload, **kw), origin=Origin())
    return task


async def until(check: Callable[[], Any], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not await check():
            await asyncio.sleep(0.02)


async def drain(settings: Settings, registry: TaskRegistry) -> None:
    """Run a real arq worker in burst mode until the queue is empty."""
    worker = create_worker(settings, registry=registry, burst=True)
    try:
        await asyncio.wait_for(worker.main(), timeout=30)
    finally:
        await worker.close()


async def test_runner_records_success(runner: TaskRunner, service: TaskService) -> None:
    task = await submit(service, "test", {"message": "Hello"})
    await runner.run(task.id)
    done = await service.repo.get(task.id)
    assert done.status is TaskStatus.SUCCEEDED
    assert done.result == {"echo": {"message": "Hello"}, "attempt": 1}
    assert done.error is None


async def test_duplicate_delivery_runs_the_handler_once(runner: TaskRunner, service: TaskService) -> None:
    key = uuid4().hex
    task = await submit(service, "tests.count", {"key": key})
    await asyncio.gather(runner.run(task.id), runner.run(task.id))
    await runner.run(task.id)
    assert task_types.RUNS[key] == 1
    assert (await service.repo.get(task.id)).attempt == 1


async def test_failures_retry_with_backoff_then_fail(runner: TaskRunner, service: TaskService) -> None:
    task = await submit(service, "fail", {"times": -1}, max_retries=1)
    with pytest.raises(Retry):
        await runner.run(task.id)
    waiting = await service.repo.get(task.id)
    assert waiting.status is TaskStatus.SCHEDULED
    assert waiting.error is not None
    assert waiting.error["type"] == "DeliberateFailure"
    await asyncio.sleep(max(0.0, (waiting.run_at - datetime.now(UTC)).total_seconds()))
    await runner.run(task.id)
    failed = await service.repo.get(task.id)
    assert (failed.status, failed.attempt) == (TaskStatus.FAILED, 2)
    assert failed.error is not None
    assert failed.error["message"] == "deliberate failure (attempt 2)"
    assert "DeliberateFailure" in failed.error["traceback"]


async def test_an_early_delivery_comes_back_when_due(runner: TaskRunner, service: TaskService) -> None:
    task = await submit(service, "test", {}, delay_seconds=60)
    with pytest.raises(Retry) as retry:
        await runner.run(task.id)
    assert 58_000 < (retry.value.defer_score or 0) <= 60_000
    assert (await service.repo.get(task.id)).status is TaskStatus.SCHEDULED


@pytest.mark.parametrize(
    ("task_type", "payload", "error_type"),
    [
        ("tests.hang", {"key": "timeout", "seconds": 30}, "TaskTimeout"),
        ("tests.bad_result", {}, "ResultNotSerializable"),
    ],
)
async def test_poison_tasks_fail_with_a_clear_error(
    runner: TaskRunner, service: TaskService, task_type: str, payload: dict[str, Any], error_type: str
) -> None:
    task = await submit(service, task_type, payload, max_retries=0, timeout_seconds=1)
    await runner.run(task.id)
    failed = await service.repo.get(task.id)
    assert failed.status is TaskStatus.FAILED
    assert failed.error is not None
    assert failed.error["type"] == error_type


async def test_a_type_no_longer_registered_fails_without_retrying(runner: TaskRunner, repo: TaskRepository) -> None:
    task, _ = await repo.insert(new_task("gone.away", {}, max_retries=5))
    await runner.run(task.id)
    failed = await repo.get(task.id)
    assert (failed.status, failed.attempt) == (TaskStatus.FAILED, 1)
    assert failed.error is not None
    assert "unknown task type" in failed.error["message"]


async def running_hang(runner: TaskRunner, service: TaskService) -> tuple[Task, asyncio.Task[None]]:
    key = uuid4().hex
    task = await submit(service, "tests.hang", {"key": key, "seconds": 30})
    job = asyncio.create_task(runner.run(task.id))
    await until(lambda: _async_true(task_types.RUNS.get(key) == 1))
    return task, job


async def _async_true(value: bool) -> bool:
    return value


async def test_a_cancel_request_seen_by_the_heartbeat_stops_the_handler(
    runner: TaskRunner, service: TaskService
) -> None:
    task, job = await running_hang(runner, service)
    assert (await service.cancel(task.id)).cancel_requested
    await runner.renew_leases()
    await asyncio.wait_for(job, timeout=2)  # the handler stopped; the delivery ends normally
    cancelled = await service.repo.get(task.id)
    assert cancelled.status is TaskStatus.CANCELLED
    assert runner.running == {}


async def test_shutdown_gives_a_running_task_back(runner: TaskRunner, service: TaskService) -> None:
    task, job = await running_hang(runner, service)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    released = await service.repo.get(task.id)
    assert (released.status, released.attempt) == (TaskStatus.QUEUED, 0)


async def test_lease_renewal_extends_running_tasks(
    runner: TaskRunner, service: TaskService, pool: asyncpg.Pool
) -> None:
    task, job = await running_hang(runner, service)
    before = await pool.fetchval("SELECT lease_expires_at FROM tasks WHERE id = $1", task.id)
    await runner.renew_leases()
    after = await pool.fetchval("SELECT lease_expires_at FROM tasks WHERE id = $1", task.id)
    assert after > before
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job


async def test_burst_worker_runs_everything(service: TaskService, settings: Settings, registry: TaskRegistry) -> None:
    tasks = [await submit(service, "test", {"n": i}) for i in range(20)]
    tasks.append(await submit(service, "fail", {"times": 1}, max_retries=2))
    await drain(settings, registry)
    finished = [await service.repo.get(t.id) for t in tasks]
    assert {t.status for t in finished} == {TaskStatus.SUCCEEDED}
    assert finished[-1].attempt == 2


async def lose_jobs(redis: ArqRedis, settings: Settings, ids: list[UUID]) -> None:
    """What a Redis restart without persistence does to our jobs."""
    await redis.delete(settings.queue_name, *(job_key_prefix + str(i) for i in ids))


async def test_reconciler_enqueues_tasks_redis_lost(
    service: TaskService,
    reconciler: Reconciler,
    redis: ArqRedis,
    settings: Settings,
    registry: TaskRegistry,
) -> None:
    ids = [(await submit(service, "test", {"n": i})).id for i in range(5)]
    later = await submit(service, "test", {}, delay_seconds=300)
    await lose_jobs(redis, settings, [*ids, later.id])
    report = await reconciler.tick()
    assert report.leader
    assert report.enqueued == 6
    assert (await reconciler.tick()).enqueued == 0
    score = await redis.zscore(settings.queue_name, str(later.id))
    assert score is not None
    assert score / 1000 == pytest.approx(later.run_at.timestamp(), abs=0.01)
    await redis.zrem(settings.queue_name, str(later.id))
    await drain(settings, registry)
    assert {(await service.repo.get(i)).status for i in ids} == {TaskStatus.SUCCEEDED}


async def test_reconciler_recovers_a_dead_workers_task(
    service: TaskService,
    reconciler: Reconciler,
    redis: ArqRedis,
    pool: asyncpg.Pool,
    settings: Settings,
    registry: TaskRegistry,
) -> None:
    task = await submit(service, "test", {"message": "again"})
    # A worker claimed it, marked the arq job in progress, then died.
    assert await service.repo.claim(task.id, worker_id="dead", lease_seconds=30)
    await redis.set(in_progress_key_prefix + str(task.id), b"1", px=3_600_000)
    await pool.execute("UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = $1", task.id)
    assert (await reconciler.tick()).recovered == 1
    await drain(settings, registry)
    done = await service.repo.get(task.id)
    assert (done.status, done.attempt) == (TaskStatus.SUCCEEDED, 2)


async def test_reconciler_frees_a_job_a_dead_worker_picked_but_never_claimed(
    service: TaskService,
    reconciler: Reconciler,
    redis: ArqRedis,
    settings: Settings,
    registry: TaskRegistry,
) -> None:
    """arq marked the job in progress, then the worker died before its claim reached PostgreSQL: the
    task is still queued and its job exists, so only the in-progress mark keeps everyone off it."""
    lifetime_ms = (settings.max_timeout_seconds + 70) * 1000
    dead = await submit(service, "test", {"message": "picked, never claimed"})
    alive = await submit(service, "test", {"message": "just picked"})
    await redis.set(in_progress_key_prefix + str(dead.id), b"1", px=lifetime_ms - 10_000)  # set 10 s ago
    await redis.set(in_progress_key_prefix + str(alive.id), b"1", px=lifetime_ms - 100)  # set just now
    report = await reconciler.tick()
    assert (report.enqueued, report.released) == (0, 1)
    assert await redis.exists(in_progress_key_prefix + str(dead.id)) == 0
    assert await redis.exists(in_progress_key_prefix + str(alive.id)) == 1
    await redis.delete(in_progress_key_prefix + str(alive.id))  # its worker is alive: let it run too
    await drain(settings, registry)
    for task in (dead, alive):
        done = await service.repo.get(task.id)
        assert (done.status, done.attempt) == (TaskStatus.SUCCEEDED, 1)


async def test_only_the_leader_reconciles(reconciler: Reconciler, repo: TaskRepository) -> None:
    async with repo.leadership(LEADER_LOCK_KEY) as held:
        assert held
        assert not (await reconciler.tick()).leader
    assert (await reconciler.tick()).leader


async def test_worker_heartbeat_is_visible_in_queue_stats(
    service: TaskService, settings: Settings, registry: TaskRegistry, repo: TaskRepository
) -> None:
    await submit(service, "sleep", {"seconds": 0.3})
    worker = create_worker(settings, registry=registry, burst=True)
    main = asyncio.create_task(worker.main())
    try:
        await until(lambda: _workers_seen(repo))
    finally:
        await asyncio.wait_for(main, timeout=10)
        await worker.close()
    assert (await repo.queue_stats(worker_seen_within=timedelta(minutes=1))).workers == 0


async def _workers_seen(repo: TaskRepository) -> bool:
    return (await repo.queue_stats(worker_seen_within=timedelta(minutes=1))).workers > 0


async def test_a_retried_task_is_not_aborted_by_an_old_cancel(
    service: TaskService, queue: TaskQueue, settings: Settings, registry: TaskRegistry
) -> None:
    """A cancel that reached Redis after the task had stopped must not abort its next run."""
    task = await submit(service, "test", {}, delay_seconds=60)
    await service.cancel(task.id)
    await queue.abort(task.id)  # the late abort request
    await service.retry(task.id)
    await drain(settings, registry)
    assert (await service.repo.get(task.id)).status is TaskStatus.SUCCEEDED


async def test_reconciler_purges_full_batches_for_its_purge_budget(
    service: TaskService, repo: TaskRepository, queue: TaskQueue, settings: Settings, pool: asyncpg.Pool
) -> None:
    """One batch per pass without a budget (batch / interval rows a second at most); with one (the
    default: 1 s), full batches one after another until the old finished tasks are gone or it is spent."""
    old = [await submit(service, "sleep", {"seconds": 0}) for _ in range(7)]
    for task in old:
        await repo.cancel(task.id)
    await pool.execute(
        "UPDATE tasks SET finished_at = now() - interval '8 days' WHERE id = ANY($1::uuid[])", [t.id for t in old]
    )
    no_budget = {"reconcile_batch_size": 2, "retention_purge_seconds": 0.0}
    one_batch = Reconciler(repo=repo, queue=queue, settings=settings.model_copy(update=no_budget))
    assert (await one_batch.tick()).purged == 2
    budget = {"reconcile_batch_size": 2, "retention_purge_seconds": 10.0}
    paced = Reconciler(repo=repo, queue=queue, settings=settings.model_copy(update=budget))
    assert (await paced.tick()).purged >= 5  # 2 + 2 + 1: the short batch ends the purge
    left = await pool.fetchval("SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[])", [t.id for t in old])
    assert left == 0
    assert (await paced.tick()).purged == 0
