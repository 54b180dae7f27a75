"""Progress from running handlers against the real PostgreSQL: validation, the per-task throttle,
the final value kept, the guarded write, the NOTIFY to watchers only, and the runner end to end."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from taskcore.domain import Task, TaskStatus
from taskcore.progress import MAX_DATA_BYTES, InvalidProgress, ProgressHub, encode_progress
from taskcore.registry import TaskContext, TaskRegistry
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository
from taskcore.store.notify import CHANNEL, StatusListener
from taskcore.store.progress import ProgressStore
from taskflow_worker.runner import TaskRunner
from tests.integration.conftest import stored


async def running(repo: TaskRepository) -> Task:
    task = await stored(repo)
    claimed = await repo.claim(task.id, worker_id="w", lease_seconds=30)
    assert claimed is not None
    return claimed


class CountingStore:
    """The real store, counting the UPDATEs it is asked for."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.store = ProgressStore(pool)
        self.calls: list[float] = []

    async def write(self, task_id: UUID, attempt: int, value: str) -> bool:
        self.calls.append(time.monotonic())
        return await self.store.write(task_id, attempt, value)


@pytest.mark.parametrize(
    ("fraction", "message", "data"),
    [
        (1.5, None, None),
        (-0.1, None, None),
        (math.nan, None, None),
        (True, None, None),
        ("0.5", None, None),
        (0.5, "x" * 1001, None),
        (0.5, 42, None),
        (0.5, None, {"blob": object()}),
        (0.5, None, {"blob": "x" * MAX_DATA_BYTES}),
        (0.5, "nul\x00", None),
    ],
)
def test_bad_progress_is_refused(fraction: Any, message: Any, data: Any) -> None:
    with pytest.raises(InvalidProgress):
        encode_progress(fraction, message, data, 1)
    # outside a worker (a handler's unit test) the same value is refused too
    with pytest.raises(InvalidProgress):
        TaskContext(UUID(int=1), "t", 1, 0).progress(fraction, message, data=data)


async def test_a_hundred_reports_in_a_second_are_one_or_two_writes_and_the_last_is_kept(
    repo: TaskRepository, pool: asyncpg.Pool
) -> None:
    task = await running(repo)
    store = CountingStore(pool)
    hub = ProgressHub(store.write)
    started = time.monotonic()
    for i in range(1, 101):
        await hub.report(task.id, task.attempt, i / 100, f"{i} of 100", {"i": i})
        await asyncio.sleep(0.0095)
    elapsed = time.monotonic() - started
    in_the_second = [t for t in store.calls if t - started < 1.0]
    assert 1 <= len(in_the_second) <= 2, store.calls
    await hub.settle(task.id)  # what the runner does before recording the outcome
    # one write per second at most (a slow machine stretches the loop), plus the final one
    assert len(store.calls) <= int(elapsed) + 2, (elapsed, store.calls)
    gaps = [b - a for a, b in zip(store.calls, store.calls[1:-1], strict=False)]
    assert all(gap >= 0.99 for gap in gaps), gaps
    progress = (await repo.get(task.id)).progress
    assert progress is not None
    assert progress["fraction"] == 1.0
    assert progress["message"] == "100 of 100"
    assert progress["data"] == {"i": 100}
    assert progress["attempt"] == task.attempt
    assert task.id not in hub


async def test_the_pending_value_is_written_when_the_window_ends(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    task = await running(repo)
    store = CountingStore(pool)
    hub = ProgressHub(store.write, interval=0.3)
    for i in range(5):
        hub.report(task.id, task.attempt, i / 4, f"step {i}", None)
    await asyncio.sleep(0.05)
    assert len(store.calls) == 1
    assert (await repo.get(task.id)).progress["message"] == "step 0"  # type: ignore[index]
    await asyncio.sleep(0.4)
    assert len(store.calls) == 2  # the window ended: the last value, once, without a settle
    assert (await repo.get(task.id)).progress["message"] == "step 4"  # type: ignore[index]
    await hub.settle(task.id)
    assert len(store.calls) == 2  # nothing pending: no further write


async def test_a_write_after_the_attempt_ended_changes_nothing(repo: TaskRepository) -> None:
    task = await running(repo)
    store = ProgressStore(repo.pool)
    assert await store.write(task.id, task.attempt, encode_progress(0.5, "half", None, task.attempt))
    written = await repo.get(task.id)
    assert written.updated_at == task.updated_at  # progress is not a state change
    assert not await store.write(task.id, task.attempt + 1, encode_progress(0.6, "other", None, task.attempt))
    assert await repo.mark_succeeded(task.id, task.attempt, {"ok": True})
    assert not await store.write(task.id, task.attempt, encode_progress(0.9, "late", None, task.attempt))
    assert (await repo.get(task.id)).progress["message"] == "half"  # type: ignore[index]


async def test_progress_wakes_the_watchers_of_that_task_only(settings: Settings, repo: TaskRepository) -> None:
    watched, unwatched = await running(repo), await running(repo)
    heard: list[str] = []
    raw = await asyncpg.connect(settings.database_url)
    await raw.add_listener(CHANNEL, lambda *args: heard.append(args[-1]))
    listener = StatusListener(settings.database_url, health_interval=0.5)
    await listener.start()
    store = ProgressStore(repo.pool)
    try:
        assert await listener.wait_connected(10)
        async with listener.subscribe(watched.id) as changes:
            await store.write(unwatched.id, unwatched.attempt, encode_progress(0.1, None, None, 1))
            assert not await changes.wait(0.3)
            await store.write(watched.id, watched.attempt, encode_progress(0.2, None, None, 1))
            assert await changes.wait(5)
        await asyncio.sleep(0.1)
        assert heard == [f"{watched.id} progress"]
    finally:
        await listener.stop()
        await raw.close()


@pytest.fixture
async def runner(repo: TaskRepository, registry: TaskRegistry, settings: Settings) -> TaskRunner:
    return TaskRunner(repo=repo, registry=registry, settings=settings, worker_id="progress-worker")


@pytest.mark.parametrize("task_type", ["tests.progress", "tests.progress_sync"])
async def test_the_runner_stores_the_last_progress_before_the_outcome(
    runner: TaskRunner, service: TaskService, task_type: str
) -> None:
    task, _ = await service.submit(TaskRequest(task_type=task_type, payload={"steps": 50}), origin=Origin())
    await runner.run(task.id)
    done = await service.repo.get(task.id)
    assert done.status is TaskStatus.SUCCEEDED
    assert done.progress is not None
    assert done.progress["fraction"] == 1.0
    assert done.progress["message"] in {"step 50 of 50", "step 50"}
    assert task.id not in runner.progress


async def test_a_task_that_never_reports_leaves_progress_null(runner: TaskRunner, service: TaskService) -> None:
    task, _ = await service.submit(TaskRequest(task_type="test", payload={"message": "m"}), origin=Origin())
    await runner.run(task.id)
    assert (await service.repo.get(task.id)).progress is None
    assert runner.progress.writes == 0


async def test_a_manual_retry_clears_the_progress(runner: TaskRunner, service: TaskService) -> None:
    task, _ = await service.submit(TaskRequest(task_type="tests.progress", payload={"steps": 2}), origin=Origin())
    await runner.run(task.id)
    await service.repo.pool.execute("UPDATE tasks SET status = 'failed' WHERE id = $1", task.id)
    assert (await service.retry(task.id)).progress is None
