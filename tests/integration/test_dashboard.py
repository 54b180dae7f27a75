"""The dashboard in-process (ASGI) with auth on: login, scopes, CSRF, the submit form and its errors."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from taskcore.registry import TaskRegistry
from taskcore.settings import Settings
from taskcore.store import TaskRepository
from taskflow_api.app import create_app
from tests.conftest import TEST_API_KEY, TEST_API_KEYS, make_settings
from tests.integration.test_service import CLOSED_PORT_PG

READ_ONLY_KEY = "read-only-dashboard-key-0123456789"
KEYS = [
    *TEST_API_KEYS,
    {"name": "viewer", "sha256": hashlib.sha256(READ_ONLY_KEY.encode()).hexdigest(), "scopes": ["tasks:read"]},
]


@pytest.fixture
async def ui(settings: Settings, registry: TaskRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(
        make_settings(settings.database_url, settings.queue_name, auth_enabled=True, api_keys=KEYS), registry=registry
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://taskflow.test") as client,
    ):
        yield client


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def login(ui: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await ui.get("/ui/login")
    return await ui.post("/ui/login", data={"csrf": csrf_of(form), "api_key": key, "next": "/ui/tasks"})


async def test_pages_need_a_login_and_a_valid_key(ui: httpx.AsyncClient) -> None:
    for path in ("/ui/", "/ui/tasks?status=failed", "/ui/submit", "/ui/overview.json"):
        response = await ui.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login?next=")
    refused = await login(ui, "wrong")
    assert refused.status_code == 401
    assert "not valid" in refused.text
    accepted = await login(ui, TEST_API_KEY)
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "/ui/tasks"
    cookie = next(c for c in accepted.headers.get_list("set-cookie") if c.startswith("taskflow_key="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http here; over https the cookie is Secure
    assert (await ui.get("/ui/overview.json")).json()["counts"]["queued"] >= 0


async def test_login_never_redirects_off_the_dashboard(ui: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/api/v1/tasks"):
        form = await ui.get("/ui/login")  # each login issues a new CSRF token
        response = await ui.post("/ui/login", data={"csrf": csrf_of(form), "api_key": TEST_API_KEY, "next": target})
        assert response.headers["location"] == "/ui/"


@pytest.mark.usefixtures("clean")
async def test_forms_without_the_csrf_token_change_nothing(ui: httpx.AsyncClient) -> None:
    await login(ui, TEST_API_KEY)
    for token in ("", "forged"):
        response = await ui.post("/ui/submit", data={"csrf": token, "task_type": "test", "payload.message": "x"})
        assert response.status_code == 403
    listed = await ui.get("/ui/tasks")
    assert "No tasks match." in listed.text


@pytest.mark.usefixtures("clean")
async def test_a_read_only_key_can_look_but_not_act(ui: httpx.AsyncClient) -> None:
    await login(ui, TEST_API_KEY)
    page = await ui.get("/ui/submit?task_type=test")
    created = await ui.post("/ui/submit", data={"csrf": csrf_of(page), "task_type": "test", "payload.message": "hi"})
    assert created.status_code == 303
    task_path = created.headers["location"]
    ui.cookies.clear()
    await login(ui, READ_ONLY_KEY)
    shown = await ui.get(task_path)
    assert shown.status_code == 200
    assert "Cancel</button>" not in shown.text
    refused = await ui.post(f"{task_path}/cancel", data={"csrf": csrf_of(shown)})
    assert refused.status_code == 403
    assert "tasks:write" in refused.text
    assert 'data-status="queued"' in (await ui.get(task_path)).text


@pytest.mark.usefixtures("clean")
async def test_the_submit_form_reports_bad_fields(ui: httpx.AsyncClient) -> None:
    await login(ui, TEST_API_KEY)
    form = await ui.get("/ui/submit?task_type=test")
    assert 'name="payload.message"' in form.text
    token = csrf_of(form)
    bad = await ui.post(
        "/ui/submit", data={"csrf": token, "task_type": "test", "payload.message": "x", "priority": "12"}
    )
    assert bad.status_code == 422
    assert "priority" in bad.text
    assert 'value="x"' in bad.text  # what was typed is kept
    unknown = await ui.post("/ui/submit", data={"csrf": token, "task_type": "nope"})
    assert unknown.status_code == 422
    assert "No tasks match." in (await ui.get("/ui/tasks")).text


@pytest.mark.usefixtures("clean")
async def test_a_form_submit_keeps_its_timeout_and_its_request_id(ui: httpx.AsyncClient, repo: TaskRepository) -> None:
    """The form takes the same path as the API: every option reaches the task, and so does the request's origin."""
    await login(ui, TEST_API_KEY)
    page = await ui.get("/ui/submit?task_type=test")
    assert 'name="timeout_seconds"' in page.text
    form = {
        "csrf": csrf_of(page),
        "task_type": "test",
        "payload.message": "t",
        "timeout_seconds": "42",
        "priority": "2",
    }
    created = await ui.post("/ui/submit", data=form, headers={"X-Request-ID": "form-submit-1"})
    assert created.status_code == 303
    task = await repo.get(uuid.UUID(created.headers["location"].rsplit("/", 1)[1]))
    assert (task.timeout_seconds, task.priority, task.request_id) == (42, 2, "form-submit-1")
    refused = await ui.post("/ui/submit", data={**form, "timeout_seconds": "0"})
    assert refused.status_code == 422
    assert "timeout_seconds" in refused.text


@pytest.mark.usefixtures("clean")
async def test_the_list_filters_by_creation_time(ui: httpx.AsyncClient) -> None:
    await login(ui, TEST_API_KEY)
    page = await ui.get("/ui/submit?task_type=test")
    await ui.post("/ui/submit", data={"csrf": csrf_of(page), "task_type": "test", "payload.message": "timed"})
    listed = await ui.get("/ui/tasks", params={"created_after": "2000-01-01T00:00"})  # a browser's datetime-local
    assert listed.text.count('data-status="queued"') == 1
    assert 'value="2000-01-01T00:00:00"' in listed.text
    later = await ui.get("/ui/tasks", params={"created_after": "2999-01-01T00:00:00+00:00"})
    assert "No tasks match." in later.text
    bad = await ui.get("/ui/tasks", params={"created_before": "yesterday"})
    assert bad.status_code == 200
    assert "must be a date and time" in bad.text


async def test_postgresql_down_is_a_readable_503_page(settings: Settings, registry: TaskRegistry) -> None:
    down = make_settings(CLOSED_PORT_PG, settings.queue_name, auth_enabled=False, dependency_timeout_seconds=0.5)
    app: FastAPI = create_app(down, registry=registry)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://taskflow.test") as client,
    ):
        for path in ("/ui/", "/ui/tasks", f"/ui/tasks/{uuid.uuid4()}"):
            response = await client.get(path)
            assert response.status_code == 503
            assert response.headers["content-type"].startswith("text/html")
            assert "postgresql is not answering" in response.text
            assert int(response.headers["Retry-After"]) > 0


@pytest.mark.usefixtures("clean")
async def test_the_submit_form_is_rate_limited_like_the_api(settings: Settings, registry: TaskRegistry) -> None:
    """The key behind the cookie pays for dashboard submits from the same bucket as API submits."""
    queue = f"{settings.queue_name}:ui-limit-{uuid.uuid4().hex[:6]}"  # a bucket of this test's own
    limits = {"submit_rate_per_second": 0.01, "submit_burst": 1}
    app = create_app(
        make_settings(settings.database_url, queue, auth_enabled=True, api_keys=KEYS, **limits), registry=registry
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://taskflow.test") as limited,
    ):
        await login(limited, TEST_API_KEY)
        token = csrf_of(await limited.get("/ui/submit?task_type=test"))
        first = await limited.post("/ui/submit", data={"csrf": token, "task_type": "test", "payload.message": "a"})
        assert first.status_code == 303
        second = await limited.post("/ui/submit", data={"csrf": token, "task_type": "test", "payload.message": "b"})
        assert second.status_code == 429
        assert int(second.headers["Retry-After"]) >= 1
        assert "rate limit is used up" in second.text
        assert 'value="b"' in second.text  # what was typed is kept
