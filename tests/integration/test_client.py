"""taskflow_client in-process (httpx ASGITransport) with auth on: the typed errors of every kind."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from taskcore.registry import TaskRegistry
from taskcore.settings import Settings
from taskflow_api.app import create_app
from taskflow_client import AsyncClient, Conflict, Forbidden, PayloadTooLarge, TaskStatus, Unauthorized
from tests.conftest import TEST_API_KEY, TEST_API_KEYS, make_settings

pytestmark = pytest.mark.usefixtures("clean")

READER = "reader-key-for-the-client-tests-0123"
KEYS = [
    *TEST_API_KEYS,
    {"name": "reader", "sha256": hashlib.sha256(READER.encode()).hexdigest(), "scopes": ["tasks:read"]},
]


@pytest.fixture
async def app(settings: Settings, registry: TaskRegistry) -> AsyncIterator[FastAPI]:
    app = create_app(
        make_settings(
            settings.database_url, settings.queue_name, auth_enabled=True, api_keys=KEYS, payload_limit_bytes=1024
        ),
        registry=registry,
    )
    async with app.router.lifespan_context(app):
        yield app


def client(app: FastAPI, key: str | None) -> AsyncClient:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    return AsyncClient("http://taskflow.test", api_key=key, http_client=http, retries=0)


async def test_typed_errors_for_auth_size_and_idempotency(app: FastAPI) -> None:
    async with client(app, TEST_API_KEY) as tf:
        task = await tf.submit("test", {"message": "one"}, idempotency_key="same")
        assert task.status is TaskStatus.QUEUED
        again = await tf.submit("test", {"message": "one"}, idempotency_key="same")
        assert again.id == task.id
        with pytest.raises(Conflict) as reused:
            await tf.submit("test", {"message": "two"}, idempotency_key="same")
        assert reused.value.type.endswith("idempotency-conflict")
        with pytest.raises(PayloadTooLarge):
            await tf.submit("test", {"message": "x" * 2000})
    async with client(app, None) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.queue()
    async with client(app, READER) as reader:
        assert (await reader.get(task.id)).id == task.id
        with pytest.raises(Forbidden) as refused:
            await reader.cancel(task.id)
        assert "tasks:write" in refused.value.detail
