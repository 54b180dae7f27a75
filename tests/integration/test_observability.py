"""Metrics and traces in-process over the real PostgreSQL and Redis: the API app (ASGI) and a
burst arq worker, each with a registry and tracer of its own, so the counts are exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from taskcore.registry import TaskRegistry
from taskcore.settings import Settings
from taskcore.telemetry import Tracing
from taskflow_api.deps import AppState
from taskflow_api.metrics import ApiMetrics
from taskflow_worker.app import create_worker
from taskflow_worker.metrics import WorkerMetrics
from tests.conftest import AUTH_HEADERS

TASKS = "/api/v1/tasks"


@pytest.fixture
async def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def app(settings: Settings, registry: TaskRegistry, exporter: InMemorySpanExporter) -> AsyncIterator[FastAPI]:
    app = create_app_traced(settings, registry, exporter)
    async with app.router.lifespan_context(app):
        yield app


def create_app_traced(settings: Settings, registry: TaskRegistry, exporter: InMemorySpanExporter) -> FastAPI:
    from taskflow_api.app import create_app

    return create_app(
        settings, registry=registry, tracing=Tracing.from_settings(settings, service="taskflow-api", exporter=exporter)
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://taskflow.test", headers=AUTH_HEADERS
    ) as c:
        yield c


async def drain(settings: Settings, registry: TaskRegistry, metrics: WorkerMetrics, tracing: Tracing) -> None:
    worker = create_worker(settings, registry=registry, burst=True, metrics=metrics, tracing=tracing)
    try:
        await asyncio.wait_for(worker.main(), timeout=60)
    finally:
        await worker.close()


def sample(metrics: WorkerMetrics | ApiMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_worker_metrics_count_every_outcome_exactly(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry
) -> None:
    for i in range(3):
        assert (await client.post(TASKS, json={"task_type": "test", "payload": {"n": i}})).status_code == 202
    failing = {"task_type": "fail", "payload": {"times": -1}, "max_retries": 1}
    assert (await client.post(TASKS, json=failing)).status_code == 202
    metrics = WorkerMetrics()
    await drain(settings, registry, metrics, Tracing(None, "test"))

    assert sample(metrics, "taskflow_tasks_finished_total", task_type="test", outcome="succeeded") == 3
    assert sample(metrics, "taskflow_tasks_finished_total", task_type="fail", outcome="failed") == 1
    assert sample(metrics, "taskflow_task_retries_total", task_type="fail") == 1
    # Every attempt started once: 3 + 2 queue waits and run durations.
    assert sample(metrics, "taskflow_task_queue_wait_seconds_count", task_type="test") == 3
    assert sample(metrics, "taskflow_task_queue_wait_seconds_count", task_type="fail") == 2
    assert sample(metrics, "taskflow_task_run_duration_seconds_count", task_type="fail") == 2
    assert sample(metrics, "taskflow_worker_tasks_in_flight") == 0
    assert sample(metrics, "taskflow_worker_last_heartbeat_timestamp_seconds") > 0
    assert sample(metrics, "taskflow_dependency_up", dependency="postgresql") == 1


async def test_api_metrics_count_submits_and_requests_by_route_template(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    ids = [(await client.post(TASKS, json={"task_type": "test", "payload": {}})).json()["id"] for _ in range(2)]
    batch = {"tasks": [{"task_type": "test", "payload": {}}, {"task_type": "sleep", "payload": {"seconds": 0}}]}
    assert (await client.post(f"{TASKS}/batch", json=batch)).status_code == 202
    await client.get(f"{TASKS}/{ids[0]}")
    missing = "00000000-0000-4000-8000-000000000000"
    assert (await client.get(f"{TASKS}/{missing}")).status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404
    state: AppState = app.state.taskflow
    await state.metrics.refresh(state.service, worker_seen_within=timedelta(seconds=10), limit=5)

    text = (await client.get("/metrics")).text
    assert 'taskflow_tasks_submitted_total{task_type="test"} 3.0' in text
    assert 'taskflow_tasks_submitted_total{task_type="sleep"} 1.0' in text
    assert 'taskflow_http_requests_total{method="POST",route="/api/v1/tasks",status="202"} 2.0' in text
    assert 'taskflow_http_requests_total{method="POST",route="/api/v1/tasks/batch",status="202"} 1.0' in text
    assert 'taskflow_http_requests_total{method="GET",route="/api/v1/tasks/{task_id}",status="200"} 1.0' in text
    assert 'taskflow_http_requests_total{method="GET",route="/api/v1/tasks/{task_id}",status="404"} 1.0' in text
    assert 'taskflow_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'taskflow_queue_depth{state="queued"} 4.0' in text
    assert 'taskflow_queue_due{queue="default"} 4.0' in text
    assert 'taskflow_dependency_up{dependency="postgresql"} 1.0' in text
    assert 'taskflow_dependency_up{dependency="redis"} 1.0' in text
    assert 'taskflow_http_request_duration_seconds_count{method="POST",route="/api/v1/tasks"} 2.0' in text
    for task_id in [*ids, missing]:  # bounded labels: never an id or a raw path
        assert task_id not in text
    assert "/no/such/path" not in text


async def test_a_request_id_is_returned_and_stored_with_the_task(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.post(
        TASKS, json={"task_type": "test", "payload": {}}, headers={"X-Request-ID": "order-42.retry-1"}
    )
    assert response.headers["X-Request-ID"] == "order-42.retry-1"
    task = await app.state.taskflow.repo.get(response.json()["id"])
    assert task.request_id == "order-42.retry-1"
    generated = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["X-Request-ID"] != "bad id with spaces"
    assert len(generated.headers["X-Request-ID"]) == 32


async def test_a_trace_runs_from_the_submit_to_the_run(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry, exporter: InMemorySpanExporter
) -> None:
    response = await client.post(TASKS, json={"task_type": "test", "payload": {"message": "traced"}})
    task_id = response.json()["id"]
    tracing = Tracing.from_settings(settings, service="taskflow-worker", exporter=exporter)
    await drain(settings, registry, WorkerMetrics(), tracing)

    spans = exporter.get_finished_spans()
    submit = next(s for s in spans if s.name == "POST /api/v1/tasks")
    run = next(s for s in spans if s.name == "run test")
    assert submit.kind is SpanKind.SERVER
    assert submit.attributes is not None
    assert submit.attributes["http.response.status_code"] == 202
    assert run.kind is SpanKind.CONSUMER
    assert run.attributes is not None
    assert run.attributes["taskflow.task_id"] == task_id
    assert submit.context is not None
    assert run.context is not None
    assert run.parent is not None
    assert run.context.trace_id == submit.context.trace_id
    assert run.parent.span_id == submit.context.span_id
    assert [link.context.span_id for link in run.links] == [submit.context.span_id]
    assert run.resource.attributes["service.name"] == "taskflow-worker"
    assert submit.resource.attributes["service.name"] == "taskflow-api"


async def test_tracing_is_off_without_an_endpoint(settings: Settings) -> None:
    tracing = Tracing.from_settings(settings, service="taskflow-api")
    assert not tracing.enabled
    assert tracing.current_traceparent() is None
