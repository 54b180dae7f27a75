"""TaskRepository against the real PostgreSQL: guarded transitions, idempotency, listing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest

from taskcore.domain import TaskStatus
from taskcore.errors import IdempotencyConflict, InvalidTransition, TaskNotFound
from taskcore.store import ListFilter, TaskRepository
from tests.integration.conftest import new_task, stored

LEASE = 30.0


async def running(repo: TaskRepository, **kw: object) -> tuple[UUID, int]:
    task = await stored(repo, **kw)
    claimed = await repo.claim(task.id, worker_id="w1", lease_seconds=LEASE)
    assert claimed is not None
    return claimed.id, claimed.attempt


async def test_insert_is_queued_when_due_and_scheduled_when_later(repo: TaskRepository) -> None:
    now_task = await stored(repo)
    later = await stored(repo, run_at=datetime.now(UTC) + timedelta(minutes=5))
    assert now_task.status is TaskStatus.QUEUED
    assert now_task.run_at == now_task.created_at
    assert later.status is TaskStatus.SCHEDULED
    assert (await repo.get(later.id)).payload == {"message": "hi"}


async def test_idempotency_key_returns_the_original_or_conflicts(repo: TaskRepository) -> None:
    first, created = await repo.insert(new_task(idempotency_key="k1", request_hash="h1"))
    again, created_again = await repo.insert(new_task(idempotency_key="k1", request_hash="h1"))
    assert created
    assert not created_again
    assert again.id == first.id
    with pytest.raises(IdempotencyConflict):
        await repo.insert(new_task(idempotency_key="k1", request_hash="other"))
    page = await repo.list_page(ListFilter(), limit=10)
    assert [t.id for t in page.items] == [first.id]


async def test_concurrent_inserts_with_one_key_store_one_task(repo: TaskRepository) -> None:
    results = await asyncio.gather(
        *(repo.insert(new_task(idempotency_key="race", request_hash="h")) for _ in range(20))
    )
    assert len({task.id for task, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_get_unknown_raises(repo: TaskRepository) -> None:
    with pytest.raises(TaskNotFound):
        await repo.get(uuid4())


async def test_list_filters_and_walks_pages_newest_first(repo: TaskRepository) -> None:
    ids = [(await stored(repo, task_type="test" if i % 2 else "sleep")).id for i in range(7)]
    cancelled = await repo.cancel(ids[0])
    seen = []
    cursor = None
    while True:
        page = await repo.list_page(ListFilter(), limit=3, cursor=cursor)
        seen.extend(t.id for t in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    by_type = await repo.list_page(ListFilter(task_type="sleep"), limit=10)
    assert [t.id for t in by_type.items] == [ids[6], ids[4], ids[2], ids[0]]
    by_status = await repo.list_page(ListFilter(statuses=[TaskStatus.CANCELLED, TaskStatus.FAILED]), limit=10)
    assert [t.id for t in by_status.items] == [cancelled.id]
    middle = (await repo.get(ids[3])).created_at
    newer = await repo.list_page(ListFilter(created_after=middle), limit=10)
    assert [t.id for t in newer.items] == [ids[6], ids[5], ids[4]]
    older = await repo.list_page(ListFilter(created_before=middle), limit=10)
    assert [t.id for t in older.items] == [ids[2], ids[1], ids[0]]


async def test_claim_is_exclusive(repo: TaskRepository) -> None:
    task = await stored(repo)
    claims = await asyncio.gather(*(repo.claim(task.id, worker_id=f"w{i}", lease_seconds=LEASE) for i in range(10)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    assert winners[0].status is TaskStatus.RUNNING
    assert winners[0].attempt == 1
    assert winners[0].started_at is not None


async def test_claim_skips_cancelled_and_not_yet_due_tasks(repo: TaskRepository) -> None:
    cancelled = await stored(repo)
    await repo.cancel(cancelled.id)
    later = await stored(repo, run_at=datetime.now(UTC) + timedelta(minutes=1))
    assert await repo.claim(cancelled.id, worker_id="w", lease_seconds=LEASE) is None
    assert await repo.claim(later.id, worker_id="w", lease_seconds=LEASE) is None
    assert (await repo.get(later.id)).attempt == 0


async def test_finish_is_guarded_by_status_and_attempt(repo: TaskRepository) -> None:
    task_id, attempt = await running(repo)
    assert await repo.mark_succeeded(task_id, attempt, {"ok": 1})
    # a duplicate delivery or a late worker finishing again changes nothing
    assert not await repo.mark_failed(task_id, attempt, {"type": "X"})
    assert not await repo.mark_succeeded(task_id, attempt, {"ok": 2})
    done = await repo.get(task_id)
    assert done.status is TaskStatus.SUCCEEDED
    assert done.result == {"ok": 1}
    assert done.finished_at is not None


async def test_a_late_worker_cannot_overwrite_a_newer_attempt(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    task_id, first_attempt = await running(repo)
    await pool.execute("UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = $1", task_id)
    recovered = await repo.recover_expired(limit=10, error={"type": "LeaseExpired"})
    assert [(r.id, r.status) for r in recovered] == [(task_id, TaskStatus.SCHEDULED)]
    second = await repo.claim(task_id, worker_id="w2", lease_seconds=LEASE)
    assert second is not None
    assert second.attempt == first_attempt + 1
    assert not await repo.mark_succeeded(task_id, first_attempt, "late")
    assert await repo.mark_succeeded(task_id, second.attempt, "fresh")
    assert (await repo.get(task_id)).result == "fresh"


async def test_retry_schedules_the_next_attempt_and_keeps_the_error(repo: TaskRepository) -> None:
    task_id, attempt = await running(repo)
    due = await repo.mark_retry(task_id, attempt, {"type": "Boom", "message": "x"}, 60)
    assert due is not None
    task = await repo.get(task_id)
    assert task.status is TaskStatus.SCHEDULED
    assert task.error == {"type": "Boom", "message": "x"}
    # run_at and updated_at are two clock_timestamp() reads of one statement: microseconds apart.
    assert timedelta(seconds=59) < task.run_at - task.updated_at <= timedelta(seconds=60, milliseconds=5)


async def test_cancel(repo: TaskRepository) -> None:
    waiting = await stored(repo)
    cancelled = await repo.cancel(waiting.id)
    assert cancelled.status is TaskStatus.CANCELLED
    assert cancelled.finished_at is not None
    with pytest.raises(InvalidTransition):
        await repo.cancel(waiting.id)
    task_id, attempt = await running(repo)
    requested = await repo.cancel(task_id)
    assert requested.status is TaskStatus.RUNNING
    assert requested.cancel_requested
    assert await repo.renew_leases([task_id], worker_id="w1", lease_seconds=LEASE) == {task_id}
    assert await repo.mark_cancelled(task_id, attempt)
    assert (await repo.get(task_id)).status is TaskStatus.CANCELLED
    with pytest.raises(TaskNotFound):
        await repo.cancel(uuid4())


async def test_manual_retry_only_from_failed_or_cancelled(repo: TaskRepository) -> None:
    task_id, attempt = await running(repo)
    with pytest.raises(InvalidTransition):
        await repo.retry(task_id)
    await repo.mark_failed(task_id, attempt, {"type": "Boom"})
    again = await repo.retry(task_id)
    assert (again.status, again.attempt, again.error, again.finished_at) == (TaskStatus.QUEUED, 0, None, None)
    with pytest.raises(InvalidTransition):
        await repo.retry(task_id)


async def test_release_gives_the_attempt_back(repo: TaskRepository) -> None:
    task_id, attempt = await running(repo)
    assert not await repo.mark_cancelled(task_id, attempt)  # nobody asked to cancel it
    assert await repo.release(task_id, attempt)
    task = await repo.get(task_id)
    assert (task.status, task.attempt, task.started_at) == (TaskStatus.QUEUED, 0, None)


async def test_expired_leases_are_recovered_by_remaining_attempts(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    retry_id, _ = await running(repo, max_retries=1)
    last_id, _ = await running(repo, max_retries=0)
    cancel_id, _ = await running(repo)
    await repo.cancel(cancel_id)
    alive_id, _ = await running(repo)
    await pool.execute(
        "UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = ANY($1::uuid[])",
        [retry_id, last_id, cancel_id],
    )
    recovered = {r.id: r.status for r in await repo.recover_expired(limit=10, error={"type": "LeaseExpired"})}
    assert recovered == {
        retry_id: TaskStatus.SCHEDULED,
        last_id: TaskStatus.FAILED,
        cancel_id: TaskStatus.CANCELLED,
    }
    assert (await repo.get(alive_id)).status is TaskStatus.RUNNING
    assert (await repo.get(last_id)).error == {"type": "LeaseExpired"}


async def test_purge_takes_the_oldest_finished_first(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    """A batch is read from the finished-at index, oldest first: ``limit`` 1 takes the oldest of three
    (whichever rows the table happens to hold first)."""
    tasks = [await stored(repo) for _ in range(3)]
    for task, days in zip(tasks, (9, 30, 20), strict=True):
        await repo.cancel(task.id)
        await pool.execute(
            "UPDATE tasks SET finished_at = now() - make_interval(days => $2) WHERE id = $1", task.id, days
        )
    # Purge rows older than this test's oldest left by other tests first, so that only ours are older than 25 days.
    while await repo.purge_finished(older_than=timedelta(days=31), limit=100):
        pass
    assert await repo.purge_finished(older_than=timedelta(days=25), limit=1) == 1
    with pytest.raises(TaskNotFound):
        await repo.get(tasks[1].id)  # finished 30 days ago
    assert await repo.purge_finished(older_than=timedelta(days=8), limit=1) == 1
    with pytest.raises(TaskNotFound):
        await repo.get(tasks[2].id)  # 20 days ago, before the one of 9
    assert (await repo.get(tasks[0].id)).status is TaskStatus.CANCELLED


async def test_waiting_batch_rotates_through_all_waiting_tasks(repo: TaskRepository) -> None:
    ids = sorted([(await stored(repo)).id for _ in range(5)])
    await running(repo)
    first = await repo.waiting_batch(after=None, limit=3, settled_for=timedelta(0))
    rest = await repo.waiting_batch(after=first[-1].id, limit=3, settled_for=timedelta(0))
    assert [t.id for t in first + rest] == ids
    assert await repo.waiting_batch(after=None, limit=3, settled_for=timedelta(minutes=1)) == []


async def test_purge_removes_only_old_finished_tasks(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    old = await stored(repo)
    await repo.cancel(old.id)
    fresh = await stored(repo)
    await repo.cancel(fresh.id)
    waiting = await stored(repo)
    await pool.execute("UPDATE tasks SET finished_at = now() - interval '8 days' WHERE id = $1", old.id)
    assert await repo.purge_finished(older_than=timedelta(days=7), limit=100) == 1
    with pytest.raises(TaskNotFound):
        await repo.get(old.id)
    assert (await repo.get(fresh.id)).status is TaskStatus.CANCELLED
    assert (await repo.get(waiting.id)).status is TaskStatus.QUEUED


async def test_queue_stats(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    await stored(repo)
    await stored(repo, run_at=datetime.now(UTC) + timedelta(hours=1))
    await running(repo)
    await pool.execute("UPDATE tasks SET run_at = now() - interval '10 seconds' WHERE status = 'queued'")
    await repo.worker_seen(worker_id="w1", hostname="h", pid=1, concurrency=5)
    stats = await repo.queue_stats(worker_seen_within=timedelta(seconds=60))
    assert stats.depth == {TaskStatus.BLOCKED: 0, TaskStatus.SCHEDULED: 1, TaskStatus.QUEUED: 1, TaskStatus.RUNNING: 1}
    assert stats.due == 1
    assert stats.oldest_due_age_seconds is not None
    assert stats.oldest_due_age_seconds >= 10
    assert stats.workers == 1
    await repo.worker_gone("w1")
    assert (await repo.queue_stats(worker_seen_within=timedelta(seconds=60))).workers == 0


async def test_leadership_is_exclusive(repo: TaskRepository) -> None:
    async with repo.leadership(4242) as first, repo.leadership(4242) as second:
        assert first
        assert not second
    async with repo.leadership(4242) as again:
        assert again


async def test_insert_many_answers_what_it_stored(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    """The batch insert answers from one row (the instant and the count): each task's status,
    run_at and created_at in the answer must be what PostgreSQL stored."""
    later = datetime.now(UTC) + timedelta(minutes=5)
    past = datetime.now(UTC) - timedelta(minutes=5)
    news = [new_task(), new_task(run_at=later, priority=3), new_task(run_at=past), new_task(payload={"n": 4})]
    answered = await repo.insert_many(news)
    assert [a.id for a in answered] == [n.id for n in news]
    sql = "SELECT id, status, priority, run_at, created_at FROM tasks WHERE id = ANY($1::uuid[])"
    rows = {r["id"]: r for r in await pool.fetch(sql, [n.id for n in news])}
    for item in answered:
        row = rows[item.id]
        assert (item.status.value, item.priority, item.run_at, item.created_at) == (
            row["status"],
            row["priority"],
            row["run_at"],
            row["created_at"],
        )
    queued, scheduled = TaskStatus.QUEUED, TaskStatus.SCHEDULED
    assert [a.status for a in answered] == [queued, scheduled, queued, queued]
    assert answered[0].run_at == answered[0].created_at == answered[3].created_at  # one instant for the batch
    assert answered[2].run_at == past  # overdue keeps its time (it runs first)
    assert await repo.insert_many([]) == []
