"""Task history (migration 0012) against the real PostgreSQL: every path that changes a task's
status leaves one history row, in order, naming who did it; retention deletes it; the API serves it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from taskcore.bulk import BulkService
from taskcore.domain import TRANSITIONS, TaskStatus
from taskcore.errors import TaskNotFound
from taskcore.queue import TaskQueue
from taskcore.scheduler import ScheduleInput, ScheduleService
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository
from taskcore.store.bulk import BulkRepository
from taskcore.store.history import Transition, task_history
from taskcore.store.repository import ListFilter, Success
from taskcore.store.schedules import ScheduleRepository
from taskcore.store.workflows import NewStep, WorkflowRepository
from tests.conftest import TEST_API_KEY
from tests.integration.conftest import new_task, stored
from tests.integration.test_api import make_client  # noqa: F401  (fixture)
from tests.integration.test_bulk import runner
from tests.integration.test_dashboard import csrf_of, login, ui  # noqa: F401  (fixture)

S = TaskStatus
API = Origin(actor="api:ops")


@pytest.fixture(autouse=True)
async def _no_leftovers(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await pool.execute("TRUNCATE task_history, workflows, task_dependencies, schedules, unique_keys")
    await pool.execute("TRUNCATE bulk_actions CASCADE")


def steps(history: list[Transition]) -> list[tuple[str | None, str, str | None]]:
    return [(None if t.from_status is None else t.from_status.value, t.to_status.value, t.actor) for t in history]


def assert_valid_path(history: list[Transition], current: TaskStatus) -> None:
    """The history is a path of the state machine, without gaps, ending where the task is."""
    assert history, "no history"
    assert history[0].from_status is None
    for before, after in itertools.pairwise(history):
        assert after.from_status == before.to_status, f"gap: {steps(history)}"
        assert after.at >= before.at
        assert (before.to_status is not None and after.to_status in TRANSITIONS[before.to_status]) or (
            after.actor == "admitter" and (before.to_status, after.to_status) == (S.SCHEDULED, S.QUEUED)
        ), f"not a transition of the state machine: {before.to_status} -> {after.to_status}"
    assert history[-1].to_status is current


async def hist(repo: TaskRepository, task_id: UUID) -> list[Transition]:
    history = await task_history(repo.pool, task_id)
    assert_valid_path(history, (await repo.get(task_id)).status)
    return history


async def run(repo: TaskRepository, task_id: UUID, worker: str = "w1") -> int:
    claimed = await repo.claim(task_id, worker_id=worker, lease_seconds=60)
    assert claimed is not None
    return claimed.attempt


async def test_the_worker_paths_name_the_worker_and_the_user_paths_the_key(
    service: TaskService, repo: TaskRepository
) -> None:
    task, _ = await service.submit(TaskRequest(task_type="test", payload={"message": "a"}), origin=API)
    attempt = await run(repo, task.id)
    assert await repo.mark_retry(task.id, attempt, {"type": "Flaky", "message": "again"}, 0.0)
    await asyncio.sleep(0.01)
    attempt = await run(repo, task.id, "w2")
    assert await repo.mark_failed(task.id, attempt, {"type": "Boom", "message": "no"})
    await service.retry(task.id, actor="api:ops")
    attempt = await run(repo, task.id)
    assert await repo.release(task.id, attempt)  # worker shutting down
    attempt = await run(repo, task.id)
    await service.cancel(task.id, actor="api:ops")  # running: cancel requested, no transition yet
    assert await repo.mark_cancelled(task.id, attempt)
    await service.retry(task.id, actor="dashboard:ops")
    attempt = await run(repo, task.id)
    assert task.id in await repo.mark_succeeded_many([Success(task.id, attempt, "1")])

    history = await hist(repo, task.id)
    assert steps(history) == [
        (None, "queued", "api:ops"),
        ("queued", "running", "worker:w1"),
        ("running", "scheduled", "worker:w1"),
        ("scheduled", "running", "worker:w2"),
        ("running", "failed", "worker:w2"),
        ("failed", "queued", "api:ops"),
        ("queued", "running", "worker:w1"),
        ("running", "queued", "worker:w1"),
        ("queued", "running", "worker:w1"),
        ("running", "cancelled", "worker:w1"),
        ("cancelled", "queued", "dashboard:ops"),
        ("queued", "running", "worker:w1"),
        ("running", "succeeded", "worker:w1"),
    ]
    assert [t.attempt for t in history] == [0, 1, 1, 2, 2, 0, 1, 0, 1, 1, 0, 1, 1]
    retry, failed = history[2].detail, history[4].detail
    assert retry is not None
    assert (retry["error_type"], retry["message"]) == ("Flaky", "again")
    assert retry["retry_at"]
    assert failed == {"error_type": "Boom", "message": "no"}
    assert history[7].detail == {"reason": "released by the worker at shutdown"}
    assert history[9].detail == {"reason": "cancel requested", "requested_by": "api:ops"}
    assert history[0].detail is None
    assert history[-1].detail is None


async def test_a_waiting_cancel_and_the_batch_and_unique_submits(service: TaskService, repo: TaskRepository) -> None:
    waiting, _ = await service.submit(
        TaskRequest(task_type="test", payload={"message": "a"}, delay_seconds=60), origin=API
    )
    await service.cancel(waiting.id, actor="api:ops")
    assert steps(await hist(repo, waiting.id)) == [
        (None, "scheduled", "api:ops"),
        ("scheduled", "cancelled", "api:ops"),
    ]

    batch = await service.submit_many(
        [TaskRequest(task_type="test", payload={"message": str(i)}) for i in range(3)], origin=Origin(actor="api:b")
    )
    mixed = await service.submit_many(
        [
            TaskRequest(task_type="test", payload={"message": "u"}, unique_key="k1"),
            TaskRequest(task_type="test", payload={"message": "p"}),
        ],
        origin=Origin(actor="api:b"),
    )
    for inserted in [*batch, *mixed]:
        assert steps(await hist(repo, inserted.id)) == [(None, "queued", "api:b")]
    one = await service.submit_one(TaskRequest(task_type="test", payload={"message": "u"}, unique_key="k2"), origin=API)
    assert steps(await hist(repo, one.task.id)) == [(None, "queued", "api:ops")]


async def test_the_reconciler_recovers_an_expired_lease(repo: TaskRepository) -> None:
    task = await stored(repo, max_retries=1)
    await run(repo, task.id, "dead-worker")
    await repo.pool.execute(
        "UPDATE tasks SET lease_expires_at = clock_timestamp() - interval '1 s' WHERE id = $1", task.id
    )
    error = {"type": "LeaseExpired", "message": "the worker stopped renewing its lease"}
    recovered = await repo.recover_expired(limit=10, error=error)
    assert [r.id for r in recovered] == [task.id]
    await run(repo, task.id, "w2")
    await repo.pool.execute(
        "UPDATE tasks SET lease_expires_at = clock_timestamp() - interval '1 s' WHERE id = $1", task.id
    )
    await repo.recover_expired(limit=10, error=error)  # out of retries: failed
    history = await hist(repo, task.id)
    assert steps(history) == [
        (None, "queued", None),
        ("queued", "running", "worker:dead-worker"),
        ("running", "scheduled", "reconciler"),
        ("scheduled", "running", "worker:w2"),
        ("running", "failed", "reconciler"),
    ]
    assert history[2].detail is not None
    assert history[2].detail["worker"] == "dead-worker"
    assert history[2].detail["error_type"] == "LeaseExpired"
    assert history[4].detail is not None
    assert history[4].detail["worker"] == "w2"


async def test_workflow_releases_cascades_and_re_arms_name_the_parent(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    workflows = WorkflowRepository(pool)
    a, b, c = new_task(actor="api:ops"), new_task(actor="api:ops"), new_task(actor="api:ops")
    await workflows.insert_workflow(
        uuid4(), "chain", [NewStep(a, "a", ()), NewStep(b, "b", ("a",)), NewStep(c, "c", ("b",))]
    )
    attempt = await run(repo, a.id)
    assert await repo.mark_failed(a.id, attempt, {"type": "Boom", "message": "no"})
    await repo.retry(a.id, actor="api:ops")  # re-arms b and c
    attempt = await run(repo, a.id)
    await repo.succeed_many([Success(a.id, attempt, "1")])  # releases b
    history = await hist(repo, b.id)
    assert steps(history) == [
        (None, "blocked", "api:ops"),
        ("blocked", "cancelled", "workflow"),
        ("cancelled", "blocked", "workflow"),
        ("blocked", "queued", "workflow"),
    ]
    assert history[1].detail == {"error_type": "UpstreamFailed", "upstream_task_id": str(a.id), "upstream_ref": "a"}
    assert history[2].detail == {"parent": str(a.id)}
    assert history[3].detail == {"parent": str(a.id)}
    assert steps(await hist(repo, c.id))[-1] == ("cancelled", "blocked", "workflow")
    changed = await workflows.cancel((await repo.get(b.id)).workflow_id or uuid4(), actor="api:ops")
    assert changed is not None
    assert steps(await hist(repo, c.id))[-1] == ("blocked", "cancelled", "api:ops")


async def test_a_dependent_submit_on_a_failed_parent_is_cancelled_at_once(
    service: TaskService, repo: TaskRepository
) -> None:
    parent, _ = await service.submit(TaskRequest(task_type="test", payload={"message": "p"}), origin=API)
    attempt = await run(repo, parent.id)
    assert await repo.mark_failed(parent.id, attempt, {"type": "Boom", "message": "no"})
    child, _ = await service.submit(
        TaskRequest(task_type="test", payload={"message": "c"}, depends_on=[parent.id]), origin=API
    )
    history = await hist(repo, child.id)
    assert steps(history) == [(None, "cancelled", "api:ops")]
    assert history[0].detail is not None
    assert history[0].detail["upstream_task_id"] == str(parent.id)


async def test_bulk_actions_name_the_bulk_action(
    service: TaskService, repo: TaskRepository, queue: TaskQueue, settings: Settings
) -> None:
    ids = []
    for _ in range(3):
        task = await stored(repo)
        attempt = await run(repo, task.id)
        assert await repo.mark_failed(task.id, attempt, {"type": "Boom", "message": "x"})
        ids.append(task.id)
    bulk = await BulkService(store=BulkRepository(repo.pool)).start(
        "retry", ListFilter(statuses=[S.FAILED]), filter_doc={}, actor="ops"
    )
    while await runner(service, queue, settings, "bulk-owner").step():
        pass
    for task_id in ids:
        assert steps(await hist(repo, task_id))[-1] == ("failed", "queued", f"bulk:{bulk.id}")


async def test_schedules_name_the_schedule(service: TaskService, repo: TaskRepository, pool: asyncpg.Pool) -> None:
    schedules = ScheduleService(service=service, repo=ScheduleRepository(pool))
    created = await schedules.create(
        ScheduleInput(
            name="nightly", task=TaskRequest(task_type="test", payload={"message": "t"}), every_seconds=60, paused=True
        )
    )
    task = await schedules.trigger(created.id)
    assert steps(await hist(repo, task.id)) == [(None, "queued", "schedule:nightly")]


async def test_the_admitter_names_itself(service: TaskService, repo: TaskRepository) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=0.3)
    task, _ = await service.submit(
        TaskRequest(task_type="test", payload={"message": "a"}, run_at=run_at, limit_keys=["tenant:1"]), origin=API
    )
    assert task.status is S.SCHEDULED
    assert not task.admitted
    await asyncio.sleep(0.4)
    admitted = await service.flow.flow.admit(window=10)
    assert admitted is not None
    assert [a.id for a in admitted] == [task.id]
    assert steps(await hist(repo, task.id)) == [(None, "scheduled", "api:ops"), ("scheduled", "queued", "admitter")]


async def test_retention_deletes_the_history_with_the_task(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    task = await stored(repo)
    attempt = await run(repo, task.id)
    assert await repo.mark_succeeded(task.id, attempt, 1)
    await pool.execute("UPDATE tasks SET finished_at = clock_timestamp() - interval '2 days' WHERE id = $1", task.id)
    assert await repo.purge_finished(older_than=timedelta(days=1), limit=10) == 1
    assert await pool.fetchval("SELECT count(*) FROM task_history WHERE task_id = $1", task.id) == 0
    with pytest.raises(TaskNotFound):
        await task_history(pool, task.id)


async def test_statements_that_change_no_status_write_no_history(repo: TaskRepository, pool: asyncpg.Pool) -> None:
    task = await stored(repo)
    await run(repo, task.id)
    await repo.renew_leases([task.id], worker_id="w1", lease_seconds=30)
    await pool.execute("UPDATE tasks SET priority = 5")
    assert len(await task_history(pool, task.id)) == 2


# -- REST ------------------------------------------------------------------------------------------


@pytest.fixture
async def api(make_client: Any, settings: Settings) -> httpx.AsyncClient:  # noqa: F811
    client: httpx.AsyncClient = await make_client(settings)
    return client


async def test_the_api_serves_the_history_naming_the_key(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/api/v1/tasks", json={"task_type": "test", "payload": {"message": "a"}, "delay_seconds": 60}
    )
    task_id = created.json()["id"]
    assert (await api.post(f"/api/v1/tasks/{task_id}/cancel")).status_code == 200
    response = await api.get(f"/api/v1/tasks/{task_id}/history")
    assert response.status_code == 200
    body = response.json()
    assert [(h["from"], h["to"], h["actor"], h["attempt"]) for h in body] == [
        (None, "scheduled", "api:test-suite", 0),
        ("scheduled", "cancelled", "api:test-suite", 0),
    ]
    assert set(body[0]) == {"at", "from", "to", "attempt", "actor", "detail"}
    datetime.fromisoformat(body[0]["at"])


async def test_the_api_answers_404_and_422_as_problems(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v1/tasks/00000000-0000-4000-8000-000000000000/history")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    bad = await api.get("/api/v1/tasks/nope/history")
    assert bad.status_code == 422
    assert "task_id" in bad.text


async def test_the_history_is_in_openapi_and_needs_a_key(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    operation = spec["paths"]["/api/v1/tasks/{task_id}/history"]["get"]
    assert "404" in operation["responses"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["type"] == "array"
    anonymous = httpx.AsyncClient(transport=api._transport, base_url="http://taskflow.test")
    assert (await anonymous.get("/api/v1/tasks/00000000-0000-4000-8000-000000000000/history")).status_code == 401


# -- dashboard -------------------------------------------------------------------------------------


async def test_the_task_page_shows_the_timeline_and_dashboard_actions_name_the_key(
    ui: httpx.AsyncClient,  # noqa: F811
    repo: TaskRepository,
) -> None:
    await login(ui, TEST_API_KEY)
    task = await stored(repo, run_at=datetime.now(UTC) + timedelta(hours=1))
    page = await ui.get(f"/ui/tasks/{task.id}")
    cancelled = await ui.post(f"/ui/tasks/{task.id}/cancel", data={"csrf": csrf_of(page)})
    assert cancelled.status_code == 303
    assert steps(await hist(repo, task.id))[-1] == ("scheduled", "cancelled", "dashboard:test-suite")
    page = await ui.get(f"/ui/tasks/{task.id}")
    assert 'id="task-history"' in page.text
    assert page.text.count('class="history-entry"') == 2
    assert "dashboard:test-suite" in page.text
    fragment = await ui.get(f"/ui/tasks/{task.id}?fragment=true")  # the live refresh keeps it
    assert 'id="task-history"' in fragment.text
