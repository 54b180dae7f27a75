"""Callbacks against the real PostgreSQL: the outbox trigger writes a delivery in the transaction that
ends a task, on every path that ends one; the claim's lease; outcomes; retention; submit checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest

from taskcore.callbacks import task_document, task_from_row
from taskcore.domain import TaskStatus
from taskcore.errors import TaskNotFound, TaskValidationError
from taskcore.registry import TaskRegistry
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository
from taskcore.store.callbacks import DeliveryRepository, Outcome
from taskcore.store.repository import Success
from taskcore.store.workflows import NewStep, WorkflowRepository
from tests.conftest import make_settings
from tests.integration.conftest import new_task, stored

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def deliveries(pool: asyncpg.Pool) -> DeliveryRepository:
    return DeliveryRepository(pool)


@pytest.fixture
async def workflows(pool: asyncpg.Pool) -> AsyncIterator[WorkflowRepository]:
    yield WorkflowRepository(pool)
    await pool.execute("TRUNCATE workflows, task_dependencies")


async def rows(pool: asyncpg.Pool, task_id: UUID) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM deliveries WHERE task_id = $1 ORDER BY created_at", task_id))


async def run(repo: TaskRepository, task_id: UUID) -> int:
    claimed = await repo.claim(task_id, worker_id="w", lease_seconds=60)
    assert claimed is not None
    return claimed.attempt


async def test_a_task_without_callback_url_writes_no_delivery(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    task = await stored(repo)
    await repo.succeed_many([Success(task.id, await run(repo, task.id), "1")])
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0


async def test_a_grouped_success_writes_one_delivery_each_with_the_task_as_it_ended(
    repo: TaskRepository, pool: asyncpg.Pool
) -> None:
    tasks = [await stored(repo, callback_url=HOOK) for _ in range(3)]
    plain = await stored(repo)
    done = await repo.succeed_many(
        [Success(t.id, await run(repo, t.id), f'{{"n": {i}}}') for i, t in enumerate([*tasks, plain])]
    )
    assert len(done.recorded) == 4
    for i, t in enumerate(tasks):
        (row,) = await rows(pool, t.id)
        assert row["event"] == "task.succeeded"
        assert row["url"] == HOOK
        assert row["status"] == "pending"
        snapshot = task_from_row(row["task"])
        assert snapshot.status is TaskStatus.SUCCEEDED
        assert snapshot.result == {"n": i}
        assert task_document(snapshot)["result"] == {"n": i}
        assert task_document(snapshot)["callback_url"] == HOOK
    assert await rows(pool, plain.id) == []


async def test_the_delivery_commits_with_the_state_change_or_not_at_all(
    repo: TaskRepository, pool: asyncpg.Pool
) -> None:
    task = await stored(repo, callback_url=HOOK)
    attempt = await run(repo, task.id)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(
            "UPDATE tasks SET status = 'failed', finished_at = now() WHERE id = $1 AND attempt = $2", task.id, attempt
        )
        assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE task_id = $1", task.id) == 1
        assert await pool.fetchval("SELECT count(*) FROM deliveries WHERE task_id = $1", task.id) == 0  # not yet
        await tx.rollback()
    assert await rows(pool, task.id) == []
    assert (await repo.get(task.id)).status is TaskStatus.RUNNING


async def test_failure_cancel_and_lease_recovery_write_their_event(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    failed = await stored(repo, callback_url=HOOK)
    assert await repo.mark_failed(failed.id, await run(repo, failed.id), {"type": "Boom", "message": "no"})
    waiting = await stored(repo, callback_url=HOOK)
    await repo.cancel(waiting.id)
    running = await stored(repo, callback_url=HOOK)
    attempt = await run(repo, running.id)
    await repo.cancel(running.id)  # a cancel request: not terminal yet
    assert await rows(pool, running.id) == []
    assert await repo.mark_cancelled(running.id, attempt)
    lost = await stored(repo, callback_url=HOOK, max_retries=0)
    await run(repo, lost.id)
    await pool.execute("UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = $1", lost.id)
    recovered = await repo.recover_expired(limit=10, error={"type": "LeaseExpired", "message": "x"})
    assert [r.status for r in recovered] == [TaskStatus.FAILED]
    retried = await stored(repo, callback_url=HOOK)  # a failed attempt with retries left: not terminal
    await repo.mark_retry(retried.id, await run(repo, retried.id), {"type": "Boom", "message": "again"}, 60)
    assert [r["event"] for r in await rows(pool, failed.id)] == ["task.failed"]
    assert [r["event"] for r in await rows(pool, waiting.id)] == ["task.cancelled"]
    assert [r["event"] for r in await rows(pool, running.id)] == ["task.cancelled"]
    assert [r["event"] for r in await rows(pool, lost.id)] == ["task.failed"]
    assert await rows(pool, retried.id) == []


async def test_a_retried_task_that_ends_again_gets_another_delivery(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    task = await stored(repo, callback_url=HOOK)
    assert await repo.mark_failed(task.id, await run(repo, task.id), {"type": "Boom", "message": "no"})
    await repo.retry(task.id)
    await repo.succeed_many([Success(task.id, await run(repo, task.id), "2")])
    found = await rows(pool, task.id)
    assert [r["event"] for r in found] == ["task.failed", "task.succeeded"]
    assert task_from_row(found[0]["task"]).error == {"type": "Boom", "message": "no"}  # as it was then


async def test_an_upstream_failure_cascade_writes_a_delivery_per_cancelled_step(
    repo: TaskRepository, workflows: WorkflowRepository, pool: asyncpg.Pool
) -> None:
    steps = [
        NewStep(new_task(callback_url=HOOK), "a", ()),
        NewStep(new_task(callback_url=HOOK), "b", ("a",)),
        NewStep(new_task(), "c", ("a",)),
    ]
    ids = {s.ref: s.id for s in await workflows.insert_workflow(uuid4(), "w", steps)}
    assert await repo.mark_failed(ids["a"], await run(repo, ids["a"]), {"type": "Boom", "message": "no"})
    (b,) = await rows(pool, ids["b"])
    assert b["event"] == "task.cancelled"
    assert task_from_row(b["task"]).error["type"] == "UpstreamFailed"  # type: ignore[index]
    assert task_from_row(b["task"]).ref == "b"
    assert await rows(pool, ids["c"]) == []


async def test_a_dependent_submit_stored_cancelled_writes_its_delivery(
    repo: TaskRepository, workflows: WorkflowRepository, pool: asyncpg.Pool
) -> None:
    parent = await stored(repo)
    assert await repo.mark_failed(parent.id, await run(repo, parent.id), {"type": "Boom", "message": "no"})
    child = await workflows.insert_dependent(new_task(callback_url=HOOK), [parent.id])
    assert child is not None
    assert child.status is TaskStatus.CANCELLED
    assert [r["event"] for r in await rows(pool, child.id)] == ["task.cancelled"]


async def test_retention_deletes_a_purged_tasks_deliveries_and_attempts(
    repo: TaskRepository, pool: asyncpg.Pool, deliveries: DeliveryRepository
) -> None:
    old = await stored(repo, callback_url=HOOK)
    await repo.cancel(old.id)
    young = await stored(repo, callback_url=HOOK)
    await repo.cancel(young.id)
    (claimed,) = [c for c in await deliveries.claim(owner="w", limit=10, lease_seconds=30) if c.task_id == old.id]
    assert await deliveries.record(Outcome(claimed.id, 1, "delivered", 200, None, 3.0), owner="w")
    await pool.execute("UPDATE tasks SET finished_at = now() - interval '10 days' WHERE id = $1", old.id)
    assert await repo.purge_finished(older_than=timedelta(days=7), limit=100) == 1
    assert await rows(pool, old.id) == []
    assert await pool.fetchval("SELECT count(*) FROM delivery_attempts") == 0
    assert len(await rows(pool, young.id)) == 1


async def test_a_claim_leases_and_a_lost_lease_is_claimed_again(
    repo: TaskRepository, pool: asyncpg.Pool, deliveries: DeliveryRepository
) -> None:
    task = await stored(repo, callback_url=HOOK)
    await repo.cancel(task.id)
    both = await asyncio.gather(
        deliveries.claim(owner="a", limit=5, lease_seconds=30), deliveries.claim(owner="b", limit=5, lease_seconds=30)
    )
    assert sorted(len(c) for c in both) == [0, 1]  # SKIP LOCKED: one claimer gets it
    (first,) = both[0] or both[1]
    owner = "a" if both[0] else "b"
    assert first.attempt == 1
    assert await deliveries.claim(owner="c", limit=5, lease_seconds=30) == []  # leased
    # Its worker dies: once the lease ends, another claims attempt 2; the dead one's late answer changes nothing.
    await pool.execute("UPDATE deliveries SET next_attempt_at = now() - interval '1 second'")
    (second,) = await deliveries.claim(owner="c", limit=5, lease_seconds=30)
    assert second.id == first.id
    assert second.attempt == 2
    assert not await deliveries.record(Outcome(first.id, 1, "delivered", 200, None, 1.0), owner=owner)
    assert await deliveries.record(Outcome(second.id, 2, "pending", 500, "HTTP 500", 2.0, retry_in=60), owner="c")
    assert await deliveries.claim(owner="c", limit=5, lease_seconds=30) == []  # backing off
    (listed,) = await deliveries.for_task(task.id)
    assert listed.status == "pending"
    assert listed.attempts == 2
    assert listed.last_status_code == 500
    assert listed.next_attempt_at is not None
    assert [(a.attempt, a.status_code, a.error) for a in listed.history] == [(2, 500, "HTTP 500")]
    await pool.execute("UPDATE deliveries SET next_attempt_at = now() - interval '1 second'")
    (third,) = await deliveries.claim(owner="c", limit=5, lease_seconds=30)
    assert await deliveries.record(Outcome(third.id, 3, "failed", 410, "410 Gone", 1.0), owner="c")
    (listed,) = await deliveries.for_task(task.id)
    assert listed.status == "failed"
    assert listed.finished_at is not None
    assert listed.next_attempt_at is None
    assert await deliveries.claim(owner="c", limit=5, lease_seconds=30) == []


async def test_deliveries_of_an_unknown_task_is_not_found(deliveries: DeliveryRepository, repo: TaskRepository) -> None:
    with pytest.raises(TaskNotFound):
        await deliveries.for_task(uuid4())
    assert await deliveries.for_task((await stored(repo)).id) == []


def _service(service: TaskService, settings: Settings, registry: TaskRegistry, **overrides: object) -> TaskService:
    changed = make_settings(settings.database_url, settings.queue_name, **overrides)
    return TaskService(repo=service.repo, queue=service.queue, registry=registry, settings=changed)


@pytest.mark.parametrize(
    ("overrides", "url", "message"),
    [
        ({"webhook_secret": None}, "https://example.com/h", "no TASKFLOW_WEBHOOK_SECRET"),
        ({"webhook_allow_private": False}, "http://127.0.0.1:8080/h", "loopback"),
        ({"webhook_allow_private": False}, "http://10.1.2.3/h", "private"),
        ({"webhook_allow_private": False}, "http://[fd00::1]/h", "unique-local"),
        ({"webhook_allow_private": False}, "http://169.254.169.254/latest", "link-local"),
        ({}, "ftp://example.com/h", "http:// or https://"),
        ({}, "https://user:pw@example.com/h", "user name"),
        ({}, "https:///nohost", "host"),
        ({}, "https://example.com/" + "a" * 2048, "at most 2048"),
    ],
)
async def test_a_submit_with_a_refused_callback_url_stores_nothing(
    service: TaskService,
    settings: Settings,
    registry: TaskRegistry,
    pool: asyncpg.Pool,
    overrides: dict[str, object],
    url: str,
    message: str,
) -> None:
    checked = _service(service, settings, registry, **overrides)
    request = TaskRequest(task_type="test", payload={"message": "x"}, callback_url=url)
    with pytest.raises(TaskValidationError) as raised:
        await checked.submit(request, origin=Origin())
    assert raised.value.errors[0]["field"] == "callback_url"
    assert message in raised.value.errors[0]["message"]
    with pytest.raises(TaskValidationError) as in_batch:
        await checked.submit_many([TaskRequest(task_type="test", payload={}), request], origin=Origin())
    assert in_batch.value.errors[0]["field"] == "tasks.1.callback_url"
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 0


async def test_a_host_name_and_a_public_address_are_accepted_at_submit(
    service: TaskService, settings: Settings, registry: TaskRegistry
) -> None:
    checked = _service(service, settings, registry, webhook_allow_private=False)
    for url in ("https://hooks.example.com/x?y=1", "http://93.184.216.34:8080/h"):
        task, created = await checked.submit(
            TaskRequest(task_type="test", payload={"message": "x"}, callback_url=url), origin=Origin()
        )
        assert created
        assert (await service.repo.get(task.id)).callback_url == url
    stored_many = await checked.submit_many(
        [TaskRequest(task_type="test", payload={"message": "x"}, callback_url="https://a.example/h")], origin=Origin()
    )
    assert (await service.repo.get(stored_many[0].id)).callback_url == "https://a.example/h"


async def test_the_api_metrics_report_pending_callbacks(repo: TaskRepository, service: TaskService) -> None:
    from taskflow_api.metrics import ApiMetrics

    task = await stored(repo, callback_url=HOOK)
    await repo.cancel(task.id)
    metrics = ApiMetrics()
    await metrics.refresh(service, worker_seen_within=timedelta(seconds=10), limit=5)
    text = metrics.exposition().decode()
    assert "taskflow_callbacks_pending 1.0" in text
    assert "taskflow_callbacks_oldest_pending_age_seconds" in text


async def test_a_bulk_cancel_writes_a_delivery_per_cancelled_task(
    repo: TaskRepository, service: TaskService, settings: Settings, pool: asyncpg.Pool
) -> None:
    from taskcore.bulk import BulkRunner, BulkService
    from taskcore.store.bulk import BulkRepository
    from taskcore.store.repository import ListFilter

    hooked = [await stored(repo, task_type="sleep", payload={"seconds": 1}, callback_url=HOOK) for _ in range(3)]
    plain = await stored(repo, task_type="sleep", payload={"seconds": 1})
    try:
        await BulkService(store=BulkRepository(pool)).start(
            "cancel", ListFilter(task_type="sleep"), filter_doc={"task_type": "sleep"}, actor="test"
        )
        runner = BulkRunner(
            store=BulkRepository(pool), queue=service.queue, flow=service.flow, settings=settings, owner="w"
        )
        assert await runner.step() == 4
        for task in hooked:
            assert [r["event"] for r in await rows(pool, task.id)] == ["task.cancelled"]
        assert await rows(pool, plain.id) == []
    finally:
        await pool.execute("TRUNCATE bulk_actions CASCADE")
