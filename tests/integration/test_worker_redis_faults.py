"""TaskflowWorker's bulk pick and grouped finish against the real Redis: arq's keys and lifetimes,
no job picked twice, a lost connection or a retried script call leaves nothing stranded, and a
job picked by a worker that died is freed by the reconciler."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from arq.worker import func

from taskcore.queue import PICK_SCRIPT, TaskflowWorker, TaskQueue, connect, in_progress_mark_lifetime
from taskcore.registry import TaskRegistry
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.settings import Settings
from taskflow_worker.app import create_worker
from taskflow_worker.reconciler import Reconciler
from tests.task_types import RUNS

TIMEOUT_S = 60


@pytest.fixture
async def queue_name(redis: ArqRedis) -> AsyncIterator[str]:
    """A queue of this test's own; its jobs' keys are removed afterwards."""
    name = f"taskflow-test:pick:{uuid4().hex[:8]}"
    yield name
    ids = [m.decode() for m in await redis.zrange(name, 0, -1)]
    keys = [prefix + i for i in ids for prefix in (job_key_prefix, in_progress_key_prefix, retry_key_prefix)]
    await redis.delete(name, *keys)
    if ids:
        await redis.zrem(abort_jobs_ss, *ids)


def worker_for(redis: ArqRedis, queue_name: str, job: Any, *, max_jobs: int) -> TaskflowWorker:
    return TaskflowWorker(
        functions=[func(job, name="job", timeout=TIMEOUT_S)],
        redis_pool=redis,
        queue_name=queue_name,
        max_jobs=max_jobs,
        keep_result=0,
        handle_signals=False,
    )


async def due_ids(redis: ArqRedis, queue_name: str) -> list[bytes]:
    ids: list[bytes] = await redis.zrangebyscore(queue_name, min=float("-inf"), max=timestamp_ms())
    return ids


async def test_two_workers_picking_the_same_jobs_never_both_get_one(redis: ArqRedis, queue_name: str) -> None:
    ran: dict[str, list[str]] = {"a": [], "b": []}

    def job_of(name: str) -> Any:
        async def job(ctx: dict[str, Any], value: str) -> None:
            ran[name].append(value)

        return job

    workers = {name: worker_for(redis, queue_name, job_of(name), max_jobs=80) for name in ran}
    for i in range(120):
        assert await redis.enqueue_job("job", f"v{i}", _queue_name=queue_name) is not None
    ids = await due_ids(redis, queue_name)
    await asyncio.gather(*(w.start_jobs(ids) for w in workers.values()))  # the same 120 ids, at once
    started = {name: set(w.tasks) for name, w in workers.items()}
    assert not started["a"] & started["b"]
    assert len(started["a"] | started["b"]) == 120
    assert {len(s) for s in started.values()} == {80, 40}  # each took what it had room for
    await asyncio.wait_for(asyncio.gather(*(t for w in workers.values() for t in w.tasks.values())), 10)
    assert sorted(ran["a"] + ran["b"], key=lambda v: int(v[1:])) == [f"v{i}" for i in range(120)]
    # finished together: every job's keys and queue entry are gone, as after arq's finish_job
    assert await redis.zcard(queue_name) == 0
    job_ids = [i.decode() for i in ids]
    for prefix in (job_key_prefix, in_progress_key_prefix, retry_key_prefix):
        assert await redis.exists(*(prefix + j for j in job_ids)) == 0
    assert all(w.job_counter == 0 and w.sem._value == w.max_jobs + 1 for w in workers.values())


async def test_jobs_another_worker_holds_at_the_head_of_the_queue_do_not_starve_this_one(
    redis: ArqRedis, queue_name: str
) -> None:
    release = asyncio.Event()

    async def job(ctx: dict[str, Any], value: int) -> None:
        await release.wait()

    busy, small = worker_for(redis, queue_name, job, max_jobs=10), worker_for(redis, queue_name, job, max_jobs=2)
    for i in range(14):
        await redis.enqueue_job("job", i, _queue_name=queue_name)
    ids = await due_ids(redis, queue_name)
    await busy.start_jobs(ids)
    await small.start_jobs(ids)  # asks about 4 ids at a time: the first 10 are taken, so it asks again
    assert set(busy.tasks) == {i.decode() for i in ids[:10]}
    assert len(small.tasks) == 2
    assert set(small.tasks) <= {i.decode() for i in ids[10:]}
    release.set()
    await asyncio.wait_for(asyncio.gather(*busy.tasks.values(), *small.tasks.values()), 10)


async def test_a_picked_job_is_marked_in_progress_like_arq_does(redis: ArqRedis, queue_name: str) -> None:
    release = asyncio.Event()
    seen: list[dict[str, Any]] = []

    async def job(ctx: dict[str, Any], value: str) -> str:
        seen.append(ctx)
        await release.wait()
        return value

    worker = worker_for(redis, queue_name, job, max_jobs=4)
    enqueued = await redis.enqueue_job("job", "hello", _queue_name=queue_name)
    assert enqueued is not None
    await worker.start_jobs(await due_ids(redis, queue_name))
    await asyncio.wait_for(_until(lambda: bool(seen)), 5)
    lifetime_ms = int(worker.in_progress_timeout_s * 1000)  # arq: the function's timeout + 10 s
    assert lifetime_ms == (TIMEOUT_S + 10) * 1000
    assert lifetime_ms - 5000 < await redis.pttl(in_progress_key_prefix + enqueued.job_id) <= lifetime_ms
    assert await redis.get(retry_key_prefix + enqueued.job_id) == b"1"  # arq's try counter
    assert (seen[0]["job_id"], seen[0]["job_try"]) == (enqueued.job_id, 1)
    assert worker.job_tasks[enqueued.job_id] is worker.tasks[enqueued.job_id]  # arq's abort cancels it
    # a second poll while it runs neither asks Redis about it nor starts it again
    await worker.start_jobs(await due_ids(redis, queue_name))
    assert len(seen) == 1
    release.set()
    await asyncio.wait_for(worker.tasks[enqueued.job_id], 5)
    assert not await redis.exists(in_progress_key_prefix + enqueued.job_id, job_key_prefix + enqueued.job_id)


async def test_an_abort_requested_before_the_start_goes_through_arq(redis: ArqRedis, queue_name: str) -> None:
    ran: list[str] = []

    async def job(ctx: dict[str, Any], value: str) -> None:
        ran.append(value)

    worker = worker_for(redis, queue_name, job, max_jobs=4)
    worker.allow_abort_jobs = True
    enqueued = await redis.enqueue_job("job", "never", _queue_name=queue_name)
    assert enqueued is not None
    await redis.zadd(abort_jobs_ss, {enqueued.job_id: timestamp_ms()})
    await worker.start_jobs(await due_ids(redis, queue_name))
    await asyncio.wait_for(asyncio.gather(*worker.tasks.values()), 5)
    assert ran == []
    assert await redis.zcard(queue_name) == 0
    assert await redis.zscore(abort_jobs_ss, enqueued.job_id) is None


async def test_a_retried_pick_answers_the_same_jobs(redis: ArqRedis, queue_name: str) -> None:
    """redis-py re-sends a command whose reply was lost: the second execution of the same call
    (same token) must return the jobs the first one marked, not leave them marked by nobody."""
    for i in range(3):
        await redis.enqueue_job("job", i, _queue_name=queue_name)
    ids = [i.decode() for i in await due_ids(redis, queue_name)]
    script = redis.register_script(PICK_SCRIPT)
    args = [timestamp_ms(), 70_000, 2, "worker-x:7", *ids]
    first = await script(keys=[queue_name, abort_jobs_ss], args=args)
    again = await script(keys=[queue_name, abort_jobs_ss], args=args)
    assert [row[0] for row in first] == [row[0] for row in again] == [i.encode() for i in ids[:2]]
    assert [row[3] for row in again] == [1, 1]  # the try was counted once
    other = await script(keys=[queue_name, abort_jobs_ss], args=[timestamp_ms(), 70_000, 5, "worker-y:1", *ids])
    assert [row[0] for row in other] == [ids[2].encode()]  # another call gets only the job left


async def test_a_redis_that_does_not_answer_leaves_the_jobs_and_the_slots(queue_name: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on: a real refused connection
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = connect(f"redis://127.0.0.1:{port}/0", queue_name=queue_name, timeout=0.5)

    async def job(ctx: dict[str, Any]) -> None:
        raise AssertionError("no job can start")

    worker = worker_for(gone, queue_name, job, max_jobs=4)
    try:
        await worker.start_jobs([b"some-job"])  # logs and returns: the next poll tries again
    finally:
        await gone.aclose(close_connection_pool=True)
    assert (worker.job_counter, worker.sem._value, worker.tasks) == (0, 5, {})


async def test_a_job_picked_by_a_worker_that_died_is_freed_and_runs_once(
    service: TaskService,
    queue: TaskQueue,
    redis: ArqRedis,
    settings: Settings,
    registry: TaskRegistry,
) -> None:
    key = uuid4().hex
    task, _ = await service.submit(TaskRequest(task_type="tests.count", payload={"key": key}), origin=Origin())
    dying = create_worker(settings, registry=registry, burst=True)
    dying._pool = redis
    await dying.start_jobs(await due_ids(redis, settings.queue_name))
    picked = dying.tasks.pop(str(task.id))
    picked.cancel()  # it dies before its claim reaches PostgreSQL: the job stays marked in progress
    with pytest.raises(asyncio.CancelledError):
        await picked
    mark = in_progress_key_prefix + str(task.id)
    lifetime_ms = int(in_progress_mark_lifetime(settings.max_timeout_seconds).total_seconds() * 1000)
    assert lifetime_ms - 5000 < await redis.pttl(mark) <= lifetime_ms  # the lifetime the reconciler expects
    await redis.pexpire(mark, lifetime_ms - int(settings.lease_seconds * 1000) - 1000)  # as if marked a while ago
    report = await Reconciler(repo=service.repo, queue=queue, settings=settings).tick()
    assert report.released == 1
    worker = create_worker(settings, registry=registry, burst=True)
    try:
        await asyncio.wait_for(worker.main(), timeout=30)
    finally:
        await worker.close()
    done = await service.repo.get(task.id)
    assert (done.status.value, done.attempt, RUNS[key]) == ("succeeded", 1, 1)


async def _until(check: Any) -> None:
    while not check():
        await asyncio.sleep(0.01)
