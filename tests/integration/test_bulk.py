"""Bulk actions against the real PostgreSQL and Redis: the exact match, guarded transitions that
skip what changed, chunks that commit whole, leases that pass on, and the filters they share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from taskcore.bulk import BulkRunner, BulkService
from taskcore.domain import TaskStatus
from taskcore.errors import TaskValidationError
from taskcore.queue import TaskQueue
from taskcore.service import TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository
from taskcore.store.bulk import BulkNotFound, BulkRepository
from taskcore.store.repository import ListFilter
from tests.conftest import make_settings
from tests.integration.conftest import stored


async def failed_tasks(repo: TaskRepository, n: int, *, error_type: str = "Boom", **kw: object) -> list[str]:
    ids = []
    for _ in range(n):
        task = await stored(repo, **kw)
        await repo.pool.execute("UPDATE tasks SET admitted = true WHERE id = $1", task.id)  # past its limit
        claimed = await repo.claim(task.id, worker_id="w", lease_seconds=30)
        assert claimed is not None
        assert await repo.mark_failed(task.id, claimed.attempt, {"type": error_type, "message": "x"})
        ids.append(task.id)
    return ids


@pytest.fixture(autouse=True)
async def _no_bulk_actions(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Each test starts and ends without bulk actions (the shared fixture empties tasks only)."""
    await pool.execute("TRUNCATE bulk_actions CASCADE")
    yield
    await pool.execute("TRUNCATE bulk_actions CASCADE")


@pytest.fixture
def bulk_store(pool: asyncpg.Pool) -> BulkRepository:
    return BulkRepository(pool)


def runner(service: TaskService, queue: TaskQueue, settings: Settings, owner: str, **overrides: object) -> BulkRunner:
    tuned = make_settings(settings.database_url, settings.queue_name, **overrides) if overrides else settings
    return BulkRunner(
        store=BulkRepository(service.repo.pool), queue=queue, flow=service.flow, settings=tuned, owner=owner
    )


async def test_the_filters_match_exactly(repo: TaskRepository, bulk_store: BulkRepository) -> None:
    await failed_tasks(repo, 3, error_type="Timeout", payload={"customer_id": 42, "x": 1})
    await failed_tasks(repo, 2, error_type="Boom", payload={"customer_id": 7})
    await failed_tasks(repo, 1, error_type="Boom", queue="emails", limit_keys=("tenant:1",))
    await stored(repo, payload={"customer_id": 42})  # queued: not retryable
    assert await bulk_store.count("retry", ListFilter()) == 6
    assert await bulk_store.count("retry", ListFilter(error_type="Timeout")) == 3
    assert await bulk_store.count("retry", ListFilter(payload={"customer_id": 42})) == 3
    assert await bulk_store.count("cancel", ListFilter(payload={"customer_id": 42})) == 1
    assert await bulk_store.count("retry", ListFilter(queue="emails")) == 1
    assert await bulk_store.count("retry", ListFilter(limit_key="tenant:1")) == 1
    assert await bulk_store.count("retry", ListFilter(limit_key="tenant:2")) == 0
    soon = datetime.now(UTC) + timedelta(minutes=1)
    assert await bulk_store.count("retry", ListFilter(created_before=soon, task_type="test")) == 6
    assert await bulk_store.count("retry", ListFilter(created_after=soon)) == 0
    page = await repo.list_page(ListFilter(payload={"customer_id": 42}, statuses=[TaskStatus.FAILED]), limit=10)
    assert len(page.items) == 3
    assert {t.error["type"] for t in page.items} == {"Timeout"}  # type: ignore[index]


def test_an_action_that_cannot_apply_names_the_field(bulk_store: BulkRepository) -> None:
    from taskcore.bulk import check_bulk

    with pytest.raises(TaskValidationError) as caught:
        check_bulk("retry", ListFilter(statuses=[TaskStatus.FAILED, TaskStatus.SUCCEEDED]))
    assert caught.value.errors[0]["field"] == "filter.status"
    with pytest.raises(TaskValidationError) as caught:
        check_bulk("delete", ListFilter())
    assert caught.value.errors[0]["field"] == "action"


async def test_a_bulk_retry_acts_once_per_task_and_skips_what_changed(
    repo: TaskRepository, service: TaskService, queue: TaskQueue, settings: Settings, pool: asyncpg.Pool
) -> None:
    ids = await failed_tasks(repo, 12)
    bulk = await BulkService(store=BulkRepository(pool)).start(
        "retry", ListFilter(error_type="Boom"), filter_doc={"error_type": "Boom"}, actor="test"
    )
    assert (bulk.matched, bulk.status, bulk.done) == (12, "running", 0)
    # changed since the match: retried by hand (then queued), or retried and failed again
    await service.retry(ids[0])
    await service.retry(ids[1])
    claimed = await repo.claim(ids[1], worker_id="w", lease_seconds=30)
    assert claimed is not None
    assert await repo.mark_failed(ids[1], claimed.attempt, {"type": "Boom", "message": "again"})
    await pool.execute("DELETE FROM tasks WHERE id = $1", ids[2])  # gone (retention): an error
    worker = runner(service, queue, settings, "w1", bulk_chunk_size=5)
    assert await worker.step() == 12
    done = await BulkRepository(pool).get(bulk.id)
    assert (done.status, done.matched, done.done) == ("finished", 12, 12)
    assert (done.succeeded, done.skipped, done.failed) == (9, 2, 1)
    assert done.finished_at is not None
    assert done.actor == "test"
    statuses = {r["id"]: r["status"] for r in await pool.fetch("SELECT id, status FROM tasks")}
    assert statuses[ids[1]] == "failed"  # not retried a second time
    assert all(statuses[i] == "queued" for i in ids[3:])
    assert set(await queue.missing(ids[3:])) == set()  # their jobs are in Redis
    assert await worker.step() == 0  # nothing left to do


async def test_a_chunk_that_fails_changes_nothing_and_the_next_lease_holder_resumes(
    repo: TaskRepository, service: TaskService, queue: TaskQueue, settings: Settings, pool: asyncpg.Pool
) -> None:
    ids = []
    for _ in range(9):
        ids.append((await stored(repo, run_at=datetime.now(UTC) + timedelta(hours=1))).id)
    store = BulkRepository(pool)
    bulk = await store.create(uuid4(), "cancel", ListFilter(), filter_doc={}, actor=None)
    assert bulk.matched == 9
    assert await store.claim("dead-worker", lease_seconds=30) == (bulk.id, "cancel")
    assert await store.run_chunk(bulk.id, "dead-worker", limit=4, lease_seconds=30) is not None
    # the second chunk dies mid-transaction (a worker killed): rolled back whole
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SET LOCAL statement_timeout = 1")
        with pytest.raises(asyncpg.QueryCanceledError):
            await conn.execute(BulkRepository._chunk_sql("cancel") + ", pg_sleep(1)", bulk.id, 4)
        await tx.rollback()
    assert await store.claim("new-worker", lease_seconds=30) is None  # the lease is still held
    await pool.execute("UPDATE bulk_actions SET lease_expires_at = now() - interval '1 second'")
    assert await store.claim("new-worker", lease_seconds=30) == (bulk.id, "cancel")
    assert await store.run_chunk(bulk.id, "dead-worker", limit=4, lease_seconds=30) is None  # not its lease now
    worker = runner(service, queue, settings, "new-worker")
    assert await worker.step() == 5
    done = await store.get(bulk.id)
    assert (done.status, done.done, done.succeeded, done.skipped, done.failed) == ("finished", 9, 9, 0, 0)
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE status = 'cancelled'") == 9
    assert await pool.fetchval("SELECT count(*) FROM bulk_action_items WHERE outcome IS NULL") == 0


async def test_a_bulk_cancel_of_running_tasks_requests_the_cancel(
    repo: TaskRepository, service: TaskService, queue: TaskQueue, settings: Settings, pool: asyncpg.Pool
) -> None:
    task = await stored(repo)
    assert await repo.claim(task.id, worker_id="w", lease_seconds=30) is not None
    waiting = await stored(repo)
    bulk = await BulkService(store=BulkRepository(pool)).start(
        "cancel", ListFilter(statuses=[TaskStatus.RUNNING, TaskStatus.QUEUED]), filter_doc={}, actor=None
    )
    assert bulk.matched == 2
    await runner(service, queue, settings, "w").step()
    assert (await repo.get(task.id)).status is TaskStatus.RUNNING
    assert (await repo.get(task.id)).cancel_requested
    assert (await repo.get(waiting.id)).status is TaskStatus.CANCELLED
    assert await repo.renew_leases([task.id], worker_id="w", lease_seconds=30) == {task.id}


async def test_an_empty_match_is_finished_at_once_and_an_unknown_id_is_not_found(bulk_store: BulkRepository) -> None:
    bulk = await bulk_store.create(uuid4(), "retry", ListFilter(), filter_doc={}, actor=None)
    assert (bulk.matched, bulk.status) == (0, "finished")
    with pytest.raises(BulkNotFound):
        await bulk_store.get(uuid4())
