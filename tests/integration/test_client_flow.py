"""taskflow_client's flow-control methods in-process (httpx ASGITransport) against the real stores."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from taskcore.registry import TaskRegistry
from taskcore.settings import Settings
from taskflow_api.app import create_app
from taskflow_client import AsyncClient, Forbidden, Limit, NotFound, Queue, TaskStatus, ValidationFailed
from tests.conftest import TEST_API_KEY, TEST_API_KEYS, make_settings

pytestmark = pytest.mark.usefixtures("clean")

WRITER = "writer-key-for-the-client-flow-tests-01"
KEYS = [
    *TEST_API_KEYS,
    {"name": "writer", "sha256": hashlib.sha256(WRITER.encode()).hexdigest(), "scopes": ["tasks:read", "tasks:write"]},
]


@pytest.fixture
async def app(settings: Settings, registry: TaskRegistry, pool: asyncpg.Pool) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(settings.database_url, settings.queue_name, api_keys=KEYS), registry=registry)
    async with app.router.lifespan_context(app):
        yield app
    await pool.execute("TRUNCATE limits, limit_rates, pauses")
    await pool.execute("DELETE FROM queues WHERE name <> 'default'")


def client(app: FastAPI, key: str) -> AsyncClient:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    return AsyncClient("http://taskflow.test", api_key=key, http_client=http, retries=0)


async def test_queues_pauses_and_the_submit_fields(app: FastAPI) -> None:
    async with client(app, TEST_API_KEY) as tf:
        task = await tf.submit("test", {"message": "hi"}, queue="emails", limit_keys=["tenant:42", "smtp"])
        assert (task.queue, task.limit_keys, task.status) == ("emails", ["tenant:42", "smtp"], TaskStatus.QUEUED)
        assert (await tf.get(task.id)).limit_keys == ["tenant:42", "smtp"]
        assert [t.id for t in (await tf.list(queue="emails")).items] == [task.id]
        assert (await tf.list(queue="default")).items == []
        assert [t.id async for t in tf.iter_tasks(queue="emails", page_size=1)] == [task.id]
        queues = {q.name: q for q in await tf.queues()}
        assert isinstance(queues["emails"], Queue)
        assert (queues["emails"].due, queues["emails"].workers, queues["emails"].stranded) == (1, 0, True)
        one = await tf.queue("emails")
        assert one.name == "emails"
        assert one.depth["queued"] == 1
        assert (await tf.queue()).due == 1  # without a name: the aggregate, as before
        with pytest.raises(NotFound):
            await tf.queue("nosuch")
        with pytest.raises(ValidationFailed):
            await tf.queue("Bad Name")
        assert (await tf.pause_queue("emails")).paused is True
        assert (await tf.queue("emails")).paused is True
        assert (await tf.resume_queue("emails")).paused is False
        paused = await tf.pause_task_type("tests.count")
        assert (paused.name, paused.paused) == ("tests.count", True)
        assert {t.name: t.paused for t in await tf.task_types()}["tests.count"] is True
        assert (await tf.resume_task_type("tests.count")).paused is False
        with pytest.raises(NotFound):
            await tf.pause_task_type("nosuch")
        with pytest.raises(ValidationFailed) as bad:
            await tf.submit("test", {"message": "x"}, limit_keys=["a"] * 5)
        assert bad.value.status == 422
        load = await tf.load(["emails", "default"])
        assert (load.queues, load.due, load.running, load.load) == (["emails", "default"], 1, 0, 1)
        assert (await tf.load("emails")).load == 1


async def test_limits_set_get_list_delete_and_typed_errors(app: FastAPI) -> None:
    async with client(app, TEST_API_KEY) as tf:
        created = await tf.set_limit("tenant:*", max_running=1)
        assert isinstance(created, Limit)
        assert (created.key, created.template, created.max_running, created.in_use) == ("tenant:*", True, 1, 0)
        for key in ("tenant:1", "tenant:1", "tenant:2"):
            await tf.submit("test", {"message": key}, limit_keys=[key])
        usage = await tf.limit("tenant:*")
        assert usage.in_use == 2
        assert [(k.key, k.in_use) for k in usage.busiest] == [("tenant:1", 1), ("tenant:2", 1)]
        rate = await tf.set_limit("stripe", per_second=5, burst=10)
        assert (rate.per_second, rate.burst, rate.max_running) == (5, 10, None)
        assert [limit.key for limit in await tf.limits()] == ["stripe", "tenant:*"]
        with pytest.raises(ValidationFailed) as bad:
            await tf.set_limit("stripe", burst=3)
        assert any(e["field"] == "burst" for e in bad.value.problem["errors"])
        with pytest.raises(ValidationFailed):
            await tf.set_limit("stripe")
        await tf.delete_limit("stripe")
        with pytest.raises(NotFound):
            await tf.limit("stripe")
        with pytest.raises(NotFound):
            await tf.delete_limit("stripe")
    async with client(app, WRITER) as writer:
        assert [limit.key for limit in await writer.limits()] == ["tenant:*"]
        with pytest.raises(Forbidden):
            await writer.set_limit("x", max_running=1)
        with pytest.raises(Forbidden):
            await writer.delete_limit("tenant:*")
        with pytest.raises(Forbidden):
            await writer.pause_queue("default")
