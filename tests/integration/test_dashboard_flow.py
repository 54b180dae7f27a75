"""The dashboard's Queues and Limits pages, the task page's queue and keys, the list's queue filter
(in-process, auth on, real PostgreSQL and Redis)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from taskcore.registry import TaskRegistry
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.settings import Settings
from taskflow_api.app import create_app
from tests.conftest import TEST_API_KEY, TEST_API_KEYS, make_settings
from tests.integration.test_dashboard import csrf_of, login

pytestmark = pytest.mark.usefixtures("clean")

WRITER_KEY = "writer-dashboard-flow-key-0123456789"
KEYS = [
    *TEST_API_KEYS,
    {
        "name": "writer",
        "sha256": hashlib.sha256(WRITER_KEY.encode()).hexdigest(),
        "scopes": ["tasks:read", "tasks:write"],
    },
]


@pytest.fixture
async def app(settings: Settings, registry: TaskRegistry, pool: asyncpg.Pool) -> AsyncIterator[FastAPI]:
    app = create_app(
        make_settings(settings.database_url, settings.queue_name, auth_enabled=True, api_keys=KEYS), registry=registry
    )
    async with app.router.lifespan_context(app):
        yield app
    await pool.execute("TRUNCATE limits, limit_rates, pauses")
    await pool.execute("DELETE FROM queues WHERE name <> 'default'")


@pytest.fixture
async def ui(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://taskflow.test") as client:
        yield client


def service_of(app: FastAPI) -> TaskService:
    service: TaskService = app.state.taskflow.service
    return service


async def put(app: FastAPI, queue: str, *keys: str, message: str = "hi") -> str:
    request = TaskRequest(task_type="test", payload={"message": message}, queue=queue, limit_keys=keys)
    task, _ = await service_of(app).submit(request, origin=Origin())
    return str(task.id)


def row_of(page: str, attribute: str, name: str) -> str:
    found = re.search(rf'<tr {attribute}="{re.escape(name)}">(.*?)</tr>', page, re.S)
    assert found, page
    return found.group(1)


async def test_the_queues_page_shows_each_queue_and_warns_of_a_queue_no_worker_consumes(
    ui: httpx.AsyncClient, app: FastAPI, pool: asyncpg.Pool
) -> None:
    for i in range(2):
        await put(app, "emails", message=str(i))
    await put(app, "default")
    await pool.execute(
        """INSERT INTO workers (id, hostname, pid, started_at, last_seen_at, concurrency, queues)
           VALUES ('w-ui', 'h', 1, now(), now(), 4, '{default}')"""
    )
    assert (await ui.get("/ui/queues")).status_code == 303  # login first
    await login(ui, TEST_API_KEY)
    page = await ui.get("/ui/queues")
    assert page.status_code == 200
    assert 'href="/ui/queues" aria-current="page"' in page.text
    assert 'href="/ui/limits"' in page.text
    emails = row_of(page.text, "data-queue", "emails")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", emails, re.S)
    assert [re.sub(r"<[^>]+>", "", c).strip() for c in cells[1:5]] == [
        "2",
        "0",
        "0",
        "2",
    ]  # due, running, sched, queued
    assert "no worker" in emails
    assert "no worker" not in row_of(page.text, "data-queue", "default")
    warning = re.search(r'<p class="warning" role="alert" id="stranded">(.*?)</p>', page.text, re.S)
    assert warning
    assert "emails" in warning.group(1)
    assert "default" not in warning.group(1)
    assert 'action="/ui/queues/emails/pause"' in page.text  # an admin key gets the buttons


async def test_pause_and_resume_from_the_dashboard_with_csrf_and_the_admin_scope(
    ui: httpx.AsyncClient, app: FastAPI, pool: asyncpg.Pool
) -> None:
    task_id = await put(app, "emails")
    await login(ui, TEST_API_KEY)
    token = csrf_of(await ui.get("/ui/queues"))
    forged = await ui.post("/ui/queues/emails/pause", data={"csrf": "forged"})
    assert forged.status_code == 403
    assert await pool.fetchval("SELECT count(*) FROM pauses") == 0
    paused = await ui.post("/ui/queues/emails/pause", data={"csrf": token})
    assert paused.status_code == 303
    assert paused.headers["location"] == "/ui/queues"
    assert await pool.fetchval("SELECT admitted FROM tasks WHERE id = $1", task_id) is False
    page = (await ui.get("/ui/queues")).text
    row = row_of(page, "data-queue", "emails")
    assert 'class="badge paused"' in row
    assert 'action="/ui/queues/emails/resume"' in row
    resumed = await ui.post("/ui/queues/emails/resume", data={"csrf": token})
    assert resumed.status_code == 303
    assert await pool.fetchval("SELECT count(*) FROM pauses") == 0
    assert await pool.fetchval("SELECT admitted FROM tasks WHERE id = $1", task_id) is True
    bad = await ui.post("/ui/queues/Bad!/pause", data={"csrf": token})
    assert bad.status_code == 422
    assert await pool.fetchval("SELECT count(*) FROM pauses") == 0


async def test_a_key_without_admin_sees_queues_but_cannot_pause(ui: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await login(ui, WRITER_KEY)
    page = await ui.get("/ui/queues")
    assert page.status_code == 200
    assert "/pause" not in page.text
    assert "admin scope" in page.text
    refused = await ui.post("/ui/queues/default/pause", data={"csrf": csrf_of(page)})
    assert refused.status_code == 403
    assert "admin scope" in refused.text
    assert await pool.fetchval("SELECT count(*) FROM pauses") == 0


async def test_the_limits_page_shows_usage_rate_burst_and_busiest_keys(ui: httpx.AsyncClient, app: FastAPI) -> None:
    flow = service_of(app).flow
    await flow.set_limit("stripe", max_running=2, per_second=5, burst=10)
    await flow.set_limit("tenant:*", max_running=1, per_second=None, burst=None)
    await put(app, "default", "stripe", "tenant:1", message="a")
    await put(app, "default", "tenant:2", message="b")
    await put(app, "default", "tenant:2", message="c")  # waits: tenant:2 is full
    await login(ui, TEST_API_KEY)
    page = await ui.get("/ui/limits")
    assert page.status_code == 200
    stripe = row_of(page.text, "data-limit", "stripe")
    assert "1 / 2" in stripe
    assert 'max="2" value="1"' in stripe
    assert "5 / s" in stripe
    assert "<td>10</td>" in stripe
    template = row_of(page.text, "data-limit", "tenant:*")
    assert "template" in template
    assert "2 / 1 per key" in template
    assert "<code>tenant:1</code> 1 / 1" in template
    assert "<code>tenant:2</code> 1 / 1" in template


async def test_the_task_page_shows_queue_and_keys_and_the_list_filters_by_queue(
    ui: httpx.AsyncClient, app: FastAPI
) -> None:
    keyed = await put(app, "emails", "tenant:42", "smtp")
    plain = await put(app, "default")
    await login(ui, TEST_API_KEY)
    page = (await ui.get(f"/ui/tasks/{keyed}")).text
    queue = re.search(r'<dd id="task-queue">(.*?)</dd>', page, re.S)
    keys = re.search(r'<dd id="task-limit-keys">(.*?)</dd>', page, re.S)
    assert queue
    assert keys
    assert ">emails</a>" in queue.group(1)
    assert "<code>tenant:42</code>, <code>smtp</code>" in keys.group(1)
    filtered = (await ui.get("/ui/tasks", params={"queue": "emails"})).text
    assert keyed in filtered
    assert plain not in filtered
    assert 'value="emails"' in filtered
    assert "queue=emails" in filtered  # the live refresh keeps the filter
    bad = await ui.get("/ui/tasks", params={"queue": "Bad!"})
    assert bad.status_code == 200
    assert "is not a queue name" in bad.text
