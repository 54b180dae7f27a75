"""The API in-process (httpx ASGI transport, lifespan run) over the real PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from taskcore.registry import TaskRegistry
from taskcore.settings import Settings
from taskflow_api.app import create_app
from tests.conftest import AUTH_HEADERS
from tests.integration.test_service import CLOSED_PORT_PG, CLOSED_PORT_REDIS

PROBLEM = "application/problem+json"


@pytest.fixture
async def make_client(registry: TaskRegistry) -> AsyncIterator[Any]:
    opened: list[tuple[Any, httpx.AsyncClient]] = []

    async def make(settings: Settings) -> httpx.AsyncClient:
        app: FastAPI = create_app(settings, registry=registry)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://taskflow.test", headers=AUTH_HEADERS
        )
        opened.append((lifespan, client))
        return client

    yield make
    for lifespan, client in opened:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def client(make_client: Any, settings: Settings) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(settings)
    return client


async def rows(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM tasks"))


def chunks(total: int, size: int = 65536) -> Iterator[bytes]:
    yield b'{"task_type": "test", "payload": {"message": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}}'


async def test_streamed_body_over_the_limit_is_refused_before_parsing(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    response = await client.post(
        "/api/v1/tasks",
        content=_aiter(chunks(settings.payload_limit_bytes * 2)),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 413
    assert await rows(pool) == 0


async def _aiter(source: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in source:
        yield chunk


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'"text"',
        b"{}",
        b'{"task_type": null, "payload": {}}',
        b'{"task_type": "test", "payload": {"message": "\\ud800"}}',
        b'{"task_type": "test", "payload": {"message": "nul \\u0000 inside"}}',
        b'{"task_type": "test", "payload": {}, "run_at": "yesterday"}',
        b'{"task_type": "test", "payload": {}, "delay_seconds": 1e400}',
        b'{"task_type": "test", "payload": {}, "priority": 1.5}',
        b'{"task_type": "test", "payload": {"x": NaN}}',
        b'{"task_type": "test", "payload": {"x": -Infinity}}',
        b'{"task_type": "test", "payload": {"x": 123456789012345678901234567890}}',
        b'{"task_type": "' + b"t" * 5000 + b'", "payload": {}}',
    ],
)
async def test_odd_bodies_get_a_problem_never_a_500(client: httpx.AsyncClient, pool: asyncpg.Pool, body: bytes) -> None:
    response = await client.post("/api/v1/tasks", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in {400, 422}, response.text
    problem = response.json()
    assert response.headers["content-type"] == PROBLEM
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["errors"]
    assert await rows(pool) == 0


async def test_ready_names_what_is_down(make_client: Any, settings: Settings) -> None:
    down = settings.model_copy(update={"database_url": CLOSED_PORT_PG, "redis_url": CLOSED_PORT_REDIS})
    client: httpx.AsyncClient = await make_client(down)
    assert (await client.get("/health")).status_code == 200
    response = await client.get("/ready")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    body = response.json()
    assert body["checks"]["postgresql"].startswith("unavailable")
    assert body["checks"]["redis"].startswith("unavailable")
    submit = await client.post("/api/v1/tasks", json={"task_type": "test", "payload": {}})
    assert submit.status_code == 503
    assert submit.headers["content-type"] == PROBLEM
    assert submit.headers["Retry-After"]
    assert "postgresql" in submit.json()["detail"]


async def test_openapi_documents_the_contract(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {
        "/api/v1/tasks",
        "/api/v1/tasks/{task_id}",
        "/api/v1/tasks/{task_id}/cancel",
        "/api/v1/tasks/{task_id}/retry",
        "/api/v1/task-types",
        "/api/v1/queue",
        "/health",
        "/ready",
        "/metrics",
    } <= spec["paths"].keys()
    submit = spec["paths"]["/api/v1/tasks"]["post"]
    assert {"202", "409", "413", "422", "503"} <= submit["responses"].keys()
    params = {p["name"] for p in submit["parameters"]}
    assert "Idempotency-Key" in params
