"""The callbacks REST contract: callback_url on every submit door, bad input as 422 problem+json naming
the field with nothing stored, the task JSON carrying it, and GET /api/v1/tasks/{id}/deliveries."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from taskcore.settings import Settings
from tests.conftest import make_settings
from tests.integration.test_api import PROBLEM, make_client  # noqa: F401 - the fixture

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
async def client(make_client: Any, settings: Settings) -> httpx.AsyncClient:  # noqa: F811
    client: httpx.AsyncClient = await make_client(settings)
    return client


async def count(pool: asyncpg.Pool, table: str = "tasks") -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {table}"))


async def test_submit_returns_callback_url_and_deliveries_lists_the_outbox_row(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    answer = await client.post("/api/v1/tasks", json={"task_type": "test", "payload": {}, "callback_url": HOOK})
    assert answer.status_code == 202, answer.text
    task = answer.json()
    assert task["callback_url"] == HOOK
    assert (await client.get(f"/api/v1/tasks/{task['id']}")).json()["callback_url"] == HOOK
    assert (await client.get(f"/api/v1/tasks/{task['id']}/deliveries")).json() == {"items": []}
    assert (await client.post(f"/api/v1/tasks/{task['id']}/cancel")).status_code == 200
    listed = (await client.get(f"/api/v1/tasks/{task['id']}/deliveries")).json()["items"]
    assert len(listed) == 1
    (delivery,) = listed
    assert delivery["event"] == "task.cancelled"
    assert delivery["status"] == "pending"
    assert delivery["url"] == HOOK
    assert delivery["attempts"] == 0
    assert delivery["history"] == []


async def test_deliveries_of_an_unknown_task_is_404_problem(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/v1/tasks/00000000-0000-4000-8000-000000000000/deliveries")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == PROBLEM
    bad = await client.get("/api/v1/tasks/not-a-uuid/deliveries")
    assert bad.status_code == 422


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("ftp://example.com/x", "callback_url"),
        ("not a url", "callback_url"),
        ("https://example.com/" + "a" * 2048, "callback_url"),
        (42, "callback_url"),
    ],
)
async def test_a_bad_callback_url_is_422_naming_it_and_stores_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool, url: object, field: str
) -> None:
    single = await client.post("/api/v1/tasks", json={"task_type": "test", "payload": {}, "callback_url": url})
    assert single.status_code == 422, single.text
    assert single.headers["content-type"] == PROBLEM
    assert [e["field"] for e in single.json()["errors"]] == [field]
    batch = await client.post(
        "/api/v1/tasks/batch",
        json={
            "tasks": [{"task_type": "test", "payload": {}}, {"task_type": "test", "payload": {}, "callback_url": url}]
        },
    )
    assert batch.status_code == 422, batch.text
    assert [e["field"] for e in batch.json()["errors"]] == [f"tasks.1.{field}"]
    flow = await client.post(
        "/api/v1/workflows",
        json={"name": "w", "callback_url": url, "tasks": [{"ref": "a", "task_type": "test", "payload": {}}]},
    )
    assert flow.status_code == 422, flow.text
    assert [e["field"] for e in flow.json()["errors"]] == [field]
    assert await count(pool) == 0


async def test_without_a_webhook_secret_callbacks_are_refused(
    make_client: Any,  # noqa: F811
    settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    client = await make_client(make_settings(settings.database_url, settings.queue_name, webhook_secret=None))
    answer = await client.post("/api/v1/tasks", json={"task_type": "test", "payload": {}, "callback_url": HOOK})
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error["field"] == "callback_url"
    assert "TASKFLOW_WEBHOOK_SECRET" in error["message"]
    assert await count(pool) == 0
    plain = await client.post("/api/v1/tasks", json={"task_type": "test", "payload": {}})
    assert plain.status_code == 202


async def test_a_private_literal_address_is_refused_unless_allowed(
    make_client: Any,  # noqa: F811
    settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    client = await make_client(make_settings(settings.database_url, settings.queue_name, webhook_allow_private=False))
    answer = await client.post(
        "/api/v1/tasks", json={"task_type": "test", "payload": {}, "callback_url": "http://192.168.1.10/h"}
    )
    assert answer.status_code == 422
    assert "private" in answer.json()["errors"][0]["message"]
    assert await count(pool) == 0


async def test_batch_and_workflow_carry_callback_url(client: httpx.AsyncClient) -> None:
    batch = await client.post(
        "/api/v1/tasks/batch",
        json={
            "tasks": [{"task_type": "test", "payload": {}, "callback_url": HOOK}, {"task_type": "test", "payload": {}}]
        },
    )
    assert batch.status_code == 202, batch.text
    first, second = [(await client.get(i["location"])).json() for i in batch.json()["items"]]
    assert first["callback_url"] == HOOK
    assert second["callback_url"] is None
    other = "http://127.0.0.1:9/other"
    flow = await client.post(
        "/api/v1/workflows",
        json={
            "name": "w",
            "callback_url": HOOK,
            "tasks": [
                {"ref": "a", "task_type": "test", "payload": {}},
                {"ref": "b", "task_type": "test", "payload": {}, "depends_on": ["a"], "callback_url": other},
            ],
        },
    )
    assert flow.status_code == 202, flow.text
    ids = flow.json()["tasks"]
    assert (await client.get(f"/api/v1/tasks/{ids['a']}")).json()["callback_url"] == HOOK
    assert (await client.get(f"/api/v1/tasks/{ids['b']}")).json()["callback_url"] == other


async def test_openapi_documents_the_field_and_the_endpoint(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "callback_url" in spec["components"]["schemas"]["TaskCreate"]["properties"]
    assert "callback_url" in spec["components"]["schemas"]["TaskOut"]["properties"]
    operation = spec["paths"]["/api/v1/tasks/{task_id}/deliveries"]["get"]
    assert "404" in operation["responses"]


async def test_a_schedules_runs_carry_its_callback_url(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    bad = await client.post(
        "/api/v1/schedules",
        json={
            "name": "hooked-bad",
            "every_seconds": 3600,
            "task": {"task_type": "test", "payload": {}, "callback_url": "x"},
        },
    )
    assert bad.status_code == 422, bad.text
    assert [e["field"] for e in bad.json()["errors"]] == ["task.callback_url"]
    created = await client.post(
        "/api/v1/schedules",
        json={
            "name": "hooked",
            "every_seconds": 3600,
            "paused": True,
            "task": {"task_type": "test", "payload": {}, "callback_url": HOOK},
        },
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["task"]["callback_url"] == HOOK
    run = await client.post(f"/api/v1/schedules/{schedule['id']}/trigger")
    assert run.status_code in (200, 201, 202), run.text
    assert run.json()["callback_url"] == HOOK
    await pool.execute("TRUNCATE schedules")


async def test_the_client_submits_callback_urls_and_reads_deliveries(settings: Settings, registry: Any) -> None:
    from fastapi import FastAPI

    from taskflow_api.app import create_app
    from taskflow_client import AsyncClient, NotFound, ValidationFailed, task_body
    from tests.conftest import TEST_API_KEY

    app: FastAPI = create_app(settings, registry=registry)
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
        async with AsyncClient("http://taskflow.test", api_key=TEST_API_KEY, http_client=http, retries=0) as tf:
            task = await tf.submit("test", {}, callback_url=HOOK)
            assert task.callback_url == HOOK
            await tf.cancel(task.id)
            (delivery,) = await tf.deliveries(task.id)
            assert delivery.event == "task.cancelled"
            assert delivery.status == "pending"
            with pytest.raises(ValidationFailed):
                await tf.submit("test", {}, callback_url="ftp://nope")
            with pytest.raises(NotFound):
                await tf.deliveries("00000000-0000-4000-8000-000000000000")
            flow = await tf.submit_workflow("w", [{"ref": "a", "task_type": "test", "payload": {}}], callback_url=HOOK)
            assert (await tf.get(flow.tasks["a"])).callback_url == HOOK
            assert task_body("test", {}, callback_url=HOOK)["callback_url"] == HOOK
        await http.aclose()


async def test_the_dashboard_task_page_shows_deliveries(
    settings: Settings, registry: Any, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    from taskflow_api.app import create_app
    from tests.integration.test_dashboard import login

    task = (await client.post("/api/v1/tasks", json={"task_type": "test", "payload": {}, "callback_url": HOOK})).json()
    plain = (await client.post("/api/v1/tasks", json={"task_type": "test", "payload": {}})).json()
    app = create_app(settings, registry=registry)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://taskflow.test") as ui,
    ):
        from tests.conftest import TEST_API_KEY

        assert (await login(ui, TEST_API_KEY)).status_code == 303
        page = await ui.get(f"/ui/tasks/{task['id']}")
        assert page.status_code == 200
        assert 'id="task-deliveries"' in page.text
        assert "No delivery yet" in page.text
        await client.post(f"/api/v1/tasks/{task['id']}/cancel")
        await pool.execute("UPDATE deliveries SET attempts = 2, last_status_code = 503, last_error = 'HTTP 503'")
        page = await ui.get(f"/ui/tasks/{task['id']}?fragment=true")
        assert "task.cancelled" in page.text
        assert "HTTP 503" in page.text
        assert 'data-status="pending"' in page.text
        assert 'id="task-deliveries"' not in (await ui.get(f"/ui/tasks/{plain['id']}")).text
