"""Batches (issue 14): a batch submit's batch_id and counts, on_complete stored exactly once when
the last task ends (also when the last ones end at once in concurrent transactions), retries,
Idempotency-Key replays of a whole batch and of its items, and bad input storing nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from taskcore.batches import OnComplete, submit_batch
from taskcore.errors import BatchNotFound
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository, create_pool
from taskcore.store.batches import BatchRepository
from tests.integration.test_api import PROBLEM, make_client  # noqa: F401 - the fixture

BATCH = "/api/v1/tasks/batch"


@pytest.fixture(autouse=True)
async def _clean_batches(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await pool.execute("TRUNCATE batches, unique_keys")


@pytest.fixture
async def api(make_client: Any, settings: Settings) -> httpx.AsyncClient:  # noqa: F811
    client: httpx.AsyncClient = await make_client(settings)
    return client


def item(message: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"task_type": "test", "payload": {"message": message}, **extra}


async def counts(pool: asyncpg.Pool) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT (SELECT count(*) FROM tasks) AS t, (SELECT count(*) FROM batches) AS b")
    return row["t"], row["b"]


async def callbacks(pool: asyncpg.Pool, batch_id: UUID) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM tasks WHERE completes_batch = $1", batch_id))


async def test_a_batch_has_an_id_its_tasks_carry_and_counts(api: httpx.AsyncClient) -> None:
    response = await api.post(BATCH, json={"tasks": [item("a"), item("b"), item("c")]})
    assert response.status_code == 202, response.text
    body = response.json()
    batch_id = body["batch_id"]
    assert UUID(batch_id)
    assert body["count"] == 3
    assert response.headers["Location"] == f"/api/v1/batches/{batch_id}"
    listed = (await api.get("/api/v1/tasks", params={"batch_id": batch_id})).json()["items"]
    assert {t["id"] for t in listed} == {i["id"] for i in body["items"]}
    assert {t["batch_id"] for t in listed} == {batch_id}
    one = (await api.get(body["items"][0]["location"])).json()
    assert one["batch_id"] == batch_id
    got = (await api.get(f"/api/v1/batches/{batch_id}")).json()
    assert got["id"] == batch_id
    assert got["total"] == 3
    assert got["counts"] == {
        "blocked": 0,
        "scheduled": 0,
        "queued": 3,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert got["finished"] is False
    assert got["finished_at"] is None
    assert got["on_complete"] is None
    other = await api.post(BATCH, json={"tasks": [item("d")]})
    assert len((await api.get("/api/v1/tasks", params={"batch_id": other.json()["batch_id"]})).json()["items"]) == 1


async def test_an_unknown_batch_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get(f"/api/v1/batches/{uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["type"].endswith("batch-not-found")
    assert (await api.get("/api/v1/batches/nope")).status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {"tasks": [item()], "on_complete": {"task_type": "test", "payload": {"message": 5}}},
            "on_complete.payload.message",
            id="on-complete-payload",
        ),
        pytest.param(
            {"tasks": [item()], "on_complete": {"task_type": "nope", "payload": {}}},
            "on_complete.task_type",
            id="on-complete-type",
        ),
        pytest.param(
            {"tasks": [item()], "on_complete": {"task_type": "test", "payload": {"message": "x"}, "extra": 1}},
            "on_complete.extra",
            id="on-complete-extra",
        ),
        pytest.param(
            {"tasks": [item()], "on_complete": {"task_type": "test", "payload": {"message": "x"}, "priority": 99}},
            "on_complete.priority",
            id="on-complete-priority",
        ),
        pytest.param(
            {"tasks": [item(idempotency_key="k1"), item(idempotency_key="k1")]},
            "tasks.1.idempotency_key",
            id="repeated-item-key",
        ),
        pytest.param({"tasks": [item(idempotency_key="")]}, "tasks.0.idempotency_key", id="empty-item-key"),
        pytest.param({"tasks": [item(idempotency_key="x" * 256)]}, "tasks.0.idempotency_key", id="long-item-key"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, body: dict[str, Any], field: str
) -> None:
    response = await api.post(BATCH, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    named = {e["field"] for e in response.json()["errors"]}
    assert any(n == field or n.endswith(field) for n in named), named
    assert await counts(pool) == (0, 0)


async def test_the_same_idempotency_key_replays_the_first_answer(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = {
        "tasks": [item(str(i)) for i in range(50)],
        "on_complete": {"task_type": "test", "payload": {"message": "x"}},
    }
    first = await api.post(BATCH, json=body, headers={"Idempotency-Key": "batch-1"})
    assert first.status_code == 202
    again = await api.post(BATCH, json=body, headers={"Idempotency-Key": "batch-1"})
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await counts(pool) == (50, 1)
    changed = {**body, "tasks": body["tasks"][:49]}
    conflict = await api.post(BATCH, json=changed, headers={"Idempotency-Key": "batch-1"})
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith(PROBLEM)
    assert await counts(pool) == (50, 1)
    assert (await api.post(BATCH, json=body, headers={"Idempotency-Key": "batch-2"})).json()[
        "batch_id"
    ] != first.json()["batch_id"]


async def test_concurrent_repeats_of_one_key_store_one_batch(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = {"tasks": [item(str(i)) for i in range(20)]}
    answers = await asyncio.gather(*(api.post(BATCH, json=body, headers={"Idempotency-Key": "race"}) for _ in range(5)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["batch_id"] for a in answers}) == 1
    assert await counts(pool) == (20, 1)


async def test_an_item_with_a_used_idempotency_key_returns_that_task(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    single = await api.post("/api/v1/tasks", json=item("one"), headers={"Idempotency-Key": "item-1"})
    assert single.status_code == 202
    response = await api.post(BATCH, json={"tasks": [item("one", idempotency_key="item-1"), item("two")]})
    assert response.status_code == 202, response.text
    first, second = response.json()["items"]
    assert first["id"] == single.json()["id"] == first["duplicate_of"]
    assert first["duplicate"] is True
    assert first["idempotent_replay"] is True
    assert "duplicate_of" not in second
    got = (await api.get(f"/api/v1/batches/{response.json()['batch_id']}")).json()
    assert got["total"] == 1  # the duplicate is not part of the batch
    # Resent (a network error): the keyed item is found again, the other one stored again (no key).
    again = await api.post(BATCH, json={"tasks": [item("one", idempotency_key="item-1")]})
    assert again.json()["items"][0]["duplicate_of"] == single.json()["id"]
    assert await counts(pool) == (2, 2)
    conflict = await api.post(BATCH, json={"tasks": [item("other", idempotency_key="item-1"), item("three")]})
    assert conflict.status_code == 409
    assert await counts(pool) == (2, 2)


async def test_items_with_new_keys_are_stored_once_across_resends(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = {"tasks": [item(str(i), idempotency_key=f"k-{i}") for i in range(20)]}
    first = (await api.post(BATCH, json=body)).json()
    assert not any("duplicate_of" in i for i in first["items"])
    second = (await api.post(BATCH, json=body)).json()
    assert [i["id"] for i in second["items"]] == [i["id"] for i in first["items"]]
    assert all(i["idempotent_replay"] for i in second["items"])
    assert await counts(pool) == (20, 2)


async def _run_all(repo: TaskRepository, ids: list[UUID]) -> None:
    claimed = await repo.claim_many(ids, worker_id="w", lease_seconds=30)
    assert len(claimed) == len(ids)


async def _batch(service: TaskService, n: int, *, on_complete: bool = True) -> tuple[UUID, list[UUID]]:
    stored = await submit_batch(
        service,
        [TaskRequest(task_type="test", payload={"message": str(i)}) for i in range(n)],
        origin=Origin(),
        on_complete=OnComplete(task_type="test", payload={"message": "done"}) if on_complete else None,
    )
    return stored.id, [i.id for i in stored.items]


async def test_on_complete_is_stored_once_when_the_last_tasks_finish_concurrently(
    service: TaskService, repo: TaskRepository, settings: Settings, pool: asyncpg.Pool
) -> None:
    """200 tasks finished at once from 50 connections, in three ways: each finishing transaction
    decrements the batch row's counter under its lock, so exactly one sees it reach 0."""
    batch_id, ids = await _batch(service, 200)
    await _run_all(repo, ids)
    wide = await create_pool(settings.database_url, max_size=50)
    try:
        many = TaskRepository(wide)
        error = {"type": "Boom", "message": "boom"}
        finishes = []
        for n, task_id in enumerate(ids):
            if n % 10 == 0:
                finishes.append(many.mark_failed(task_id, 1, error))
            else:
                finishes.append(many.mark_succeeded(task_id, 1, {"n": n}))
        assert all(await asyncio.gather(*finishes))
    finally:
        await wide.close()
    assert await callbacks(pool, batch_id) == 1
    batch = await BatchRepository(pool).get(batch_id)
    assert batch.finished
    assert batch.finished_at is not None
    assert batch.counts["succeeded"] == 180
    assert batch.counts["failed"] == 20
    assert batch.on_complete_status == "queued"
    callback = await repo.get(batch.on_complete_task_id)  # type: ignore[arg-type]
    assert callback.completes_batch == batch_id
    assert callback.batch_id is None
    assert callback.payload == {"message": "done"}
    assert await BatchRepository(pool).callbacks_due([batch_id]) != []


@pytest.mark.parametrize("round_", range(3))
async def test_the_last_two_finishing_at_once_fire_once(
    service: TaskService, repo: TaskRepository, pool: asyncpg.Pool, round_: int
) -> None:
    batch_id, ids = await _batch(service, 2)
    await _run_all(repo, ids)
    error = {"type": "Boom", "message": "boom"}
    done = await asyncio.gather(repo.mark_succeeded(ids[0], 1, None), repo.mark_failed(ids[1], 1, error))
    assert all(done)
    assert await callbacks(pool, batch_id) == 1


async def test_a_retry_reopens_the_batch_but_on_complete_runs_once(
    service: TaskService, repo: TaskRepository, pool: asyncpg.Pool
) -> None:
    batch_id, ids = await _batch(service, 2)
    await _run_all(repo, ids)
    assert await repo.mark_succeeded(ids[0], 1, None)
    assert await repo.mark_failed(ids[1], 1, {"type": "Boom", "message": "boom"})
    batches = BatchRepository(pool)
    assert (await batches.get(batch_id)).finished
    await service.retry(ids[1])
    reopened = await batches.get(batch_id)
    assert not reopened.finished
    assert reopened.finished_at is None
    assert reopened.counts["queued"] == 1
    await _run_all(repo, [ids[1]])
    assert await repo.mark_succeeded(ids[1], 1, None)
    again = await batches.get(batch_id)
    assert again.finished
    assert again.counts["succeeded"] == 2
    assert await callbacks(pool, batch_id) == 1


async def test_cancelling_the_tasks_finishes_the_batch(service: TaskService, pool: asyncpg.Pool) -> None:
    batch_id, ids = await _batch(service, 3)
    for task_id in ids:
        await service.cancel(task_id)
    batch = await BatchRepository(pool).get(batch_id)
    assert batch.finished
    assert batch.counts["cancelled"] == 3
    assert await callbacks(pool, batch_id) == 1


async def test_a_batch_without_on_complete_finishes_without_one(
    service: TaskService, repo: TaskRepository, pool: asyncpg.Pool
) -> None:
    batch_id, ids = await _batch(service, 2, on_complete=False)
    await _run_all(repo, ids)
    for task_id in ids:
        assert await repo.mark_succeeded(task_id, 1, None)
    batch = await BatchRepository(pool).get(batch_id)
    assert batch.finished
    assert batch.finished_at is not None
    assert batch.on_complete_task_id is None
    assert await callbacks(pool, batch_id) == 0
    # Its tasks are not counted on the batch row (nothing waits for the count): the trigger never ran.
    assert not any(t.batch_counted for t in [await repo.get(i) for i in ids])
    assert await pool.fetchval("SELECT fired_at IS NULL AND remaining = 0 FROM batches WHERE id = $1", batch_id)


async def test_a_batch_of_duplicates_only_fires_on_complete_at_once(service: TaskService, pool: asyncpg.Pool) -> None:
    holder = await submit_batch(
        service, [TaskRequest(task_type="test", payload={"message": "h"}, unique_key="u1")], origin=Origin()
    )
    stored = await submit_batch(
        service,
        [TaskRequest(task_type="test", payload={"message": "h"}, unique_key="u1")],
        origin=Origin(),
        on_complete=OnComplete(task_type="test", payload={"message": "done"}),
    )
    assert stored.items[0].duplicate_of == holder.items[0].id
    assert stored.callback is not None
    batch = await BatchRepository(pool).get(stored.id)
    assert batch.total == 0
    assert batch.finished
    assert await callbacks(pool, stored.id) == 1


async def test_plain_tasks_do_not_touch_batches(service: TaskService, repo: TaskRepository, pool: asyncpg.Pool) -> None:
    task, _ = await service.submit(TaskRequest(task_type="test", payload={"message": "x"}), origin=Origin())
    assert task.batch_id is None
    await _run_all(repo, [task.id])
    assert await repo.mark_succeeded(task.id, 1, None)
    assert await counts(pool) == (1, 0)


class _LosesFirstAnswer(httpx.AsyncBaseTransport):
    """Forwards every request; the first batch answer is lost on the way back (a network error
    after the server stored the batch), as a client whose batch call died would see it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.keys: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/tasks/batch"):
            self.keys.append(request.headers["Idempotency-Key"])
            if len(self.keys) == 1:
                await response.aread()
                raise httpx.ReadError("connection reset while reading the answer", request=request)
        return response


async def test_the_client_resends_a_batch_whose_answer_was_lost_and_nothing_is_stored_twice(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    from taskflow_client import AsyncClient

    app = api._transport.app  # type: ignore[attr-defined]  # the API the fixture started
    lossy = _LosesFirstAnswer(httpx.ASGITransport(app=app))
    http = httpx.AsyncClient(transport=lossy, headers=dict(api.headers))
    async with AsyncClient("http://taskflow.test", http_client=http, retries=2, max_retry_wait=0.1) as tf:
        submitted = await tf.submit_batch(
            [{"task_type": "test", "payload": {"message": str(i)}} for i in range(100)],
            on_complete={"task_type": "test", "payload": {"message": "done"}},
        )
        assert len(lossy.keys) == 2
        assert lossy.keys[0] == lossy.keys[1]  # resent with the same Idempotency-Key
        assert await counts(pool) == (100, 1)
        batch = await tf.batch(submitted.batch_id)
        assert batch.total == 100
        assert batch.counts["queued"] == 100
        assert batch.on_complete is not None
        assert batch.on_complete.status is None
        page = await tf.list(batch_id=submitted.batch_id, limit=100)
        assert {t.id for t in page.items} == {i.id for i in submitted.items}
        assert {t.batch_id for t in page.items} == {submitted.batch_id}


async def test_the_dashboard_shows_a_batch_and_links_its_tasks(
    service: TaskService, repo: TaskRepository, settings: Settings, registry: Any
) -> None:
    from fastapi import FastAPI

    from taskflow_api.app import create_app
    from tests.conftest import TEST_API_KEY
    from tests.integration.test_dashboard import login

    batch_id, ids = await _batch(service, 4)
    await _run_all(repo, ids[:1])
    assert await repo.mark_succeeded(ids[0], 1, None)
    app: FastAPI = create_app(settings, registry=registry)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://taskflow.test") as ui,
    ):
        await login(ui, TEST_API_KEY)
        page = await ui.get(f"/ui/batches/{batch_id}")
        assert page.status_code == 200, page.text
        assert 'id="batch-progress" max="100" value="25"' in page.text
        assert "1 of 4 tasks ended" in page.text
        assert 'data-finished="false"' in page.text
        fragment = await ui.get(f"/ui/batches/{batch_id}?fragment=true")
        assert fragment.status_code == 200
        assert "<html" not in fragment.text
        task = await ui.get(f"/ui/tasks/{ids[1]}")
        assert f'href="/ui/batches/{batch_id}"' in task.text
        listed = await ui.get("/ui/tasks", params={"batch_id": str(batch_id)})
        assert listed.status_code == 200
        assert all(str(i) in listed.text for i in ids)
        assert 'id="batch-filter"' in listed.text
        missing = await ui.get(f"/ui/batches/{uuid4()}")
        assert missing.status_code == 404


async def test_openapi_declares_the_batch_endpoints(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    assert "/api/v1/batches/{batch_id}" in spec["paths"]
    post = spec["paths"]["/api/v1/tasks/batch"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    schemas = spec["components"]["schemas"]
    assert "on_complete" in schemas["BatchCreate"]["properties"]
    assert "idempotency_key" in schemas["BatchTaskCreate"]["properties"]
    assert "batch_id" in schemas["TaskOut"]["properties"]
    listed = spec["paths"]["/api/v1/tasks"]["get"]
    assert any(p["name"] == "batch_id" for p in listed["parameters"])


def test_the_clients_batch_call_carries_a_key_and_may_be_resent() -> None:
    """(The blocking client's batch calls run against a real API in tests/e2e/test_batches.py, via the CLI.)"""
    from taskflow_client import Client
    from taskflow_client._base import submit_batch_call

    call = submit_batch_call([{"task_type": "test", "payload": {}}], on_complete=None, idempotency_key=None)
    assert call.resend
    assert call.headers["Idempotency-Key"].startswith("taskflow-client-batch-")
    assert Client.submit_batch.__doc__ is not None
    assert Client.batch.__doc__ is not None


async def test_success_batches_ending_tasks_of_two_batches_in_opposite_orders_all_count(
    service: TaskService, repo: TaskRepository, settings: Settings, registry: Any, pool: asyncpg.Pool
) -> None:
    """Two workers' success batches that end tasks of batches X and Y in opposite orders lock the
    two batch rows in opposite orders: PostgreSQL may abort one (deadlock), and the runner sends
    it again. Every success is recorded and each batch fires once."""
    from taskcore.store.repository import Success
    from taskflow_worker.runner import TaskRunner

    wide = await create_pool(settings.database_url, max_size=20)
    try:
        runner = TaskRunner(repo=TaskRepository(wide), registry=registry, settings=settings, worker_id="w")
        for _ in range(3):
            x_id, xs = await _batch(service, 60)
            y_id, ys = await _batch(service, 60)
            await _run_all(repo, xs + ys)
            firsts = [Success(t, 1, "null") for pair in zip(xs, ys, strict=True) for t in pair]
            seconds = [Success(t, 1, "null") for pair in zip(ys, xs, strict=True) for t in pair]
            halves = [firsts[i : i + 20] if i % 40 == 0 else seconds[i : i + 20] for i in range(0, 120, 20)]
            outcomes = await asyncio.gather(*(runner._succeed_many(h) for h in halves))
            assert sum(len(o.recorded) for o in outcomes) == 120
            assert await callbacks(pool, x_id) == 1
            assert await callbacks(pool, y_id) == 1
    finally:
        await wide.close()


async def test_retention_drops_a_batch_once_its_tasks_are_gone(service: TaskService, pool: asyncpg.Pool) -> None:
    from datetime import timedelta

    kept, _ = await _batch(service, 2)
    gone, ids = await _batch(service, 2, on_complete=False)
    await pool.execute("DELETE FROM tasks WHERE id = ANY($1::uuid[])", ids)
    batches = BatchRepository(pool)
    assert await batches.purge(older_than=timedelta(0), limit=100) == 1
    assert (await batches.get(kept)).total == 2
    with pytest.raises(BatchNotFound):
        await batches.get(gone)
