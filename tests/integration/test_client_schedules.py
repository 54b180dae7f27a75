"""taskflow_client's schedule methods and unique_key, in-process against the real API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from taskcore.registry import TaskRegistry
from taskcore.settings import Settings
from taskflow_api.app import create_app
from taskflow_client import AsyncClient, Conflict, NotFound, ValidationFailed, task_body
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture
async def tf(settings: Settings, registry: TaskRegistry, pool: asyncpg.Pool) -> AsyncIterator[AsyncClient]:
    app: FastAPI = create_app(settings, registry=registry)
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
        async with AsyncClient("http://taskflow.test", api_key=TEST_API_KEY, http_client=http, retries=0) as client:
            yield client
        await http.aclose()
    await pool.execute("TRUNCATE schedules, unique_keys")


async def test_schedule_lifecycle_through_the_client(tf: AsyncClient) -> None:
    created = await tf.create_schedule(
        "client-nightly", task_body("test", {"message": "x"}, priority=2), cron="0 3 * * *", timezone="Europe/Paris"
    )
    assert len(created.next_runs) == 3
    assert created.task["priority"] == 2
    assert [s.id for s in await tf.list_schedules()] == [created.id]
    assert (await tf.get_schedule(created.id)).name == "client-nightly"
    changed = await tf.update_schedule(created.id, every_seconds=600)
    assert changed.cron is None
    assert changed.every_seconds == 600
    assert (await tf.pause_schedule(created.id)).paused
    assert not (await tf.resume_schedule(created.id)).paused
    run = await tf.trigger_schedule(created.id)
    assert run.schedule_id == created.id
    assert [t.id for t in (await tf.list(schedule_id=created.id)).items] == [run.id]
    with pytest.raises(Conflict):
        await tf.create_schedule("client-nightly", task_body("test", {"message": "x"}), every_seconds=5)
    with pytest.raises(ValidationFailed):
        await tf.create_schedule("other", task_body("test", {"message": "x"}), cron="bad")
    await tf.delete_schedule(created.id)
    with pytest.raises(NotFound):
        await tf.get_schedule(created.id)


async def test_unique_key_through_the_client(tf: AsyncClient) -> None:
    first = await tf.submit("test", {"message": "u"}, unique_key="client:u", unique_for_seconds=60)
    again = await tf.submit("test", {"message": "u"}, unique_key="client:u")
    assert again.id == first.id
    assert first.unique_key == "client:u"
