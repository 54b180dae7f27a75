"""What a client or an operator can discover: task types, queue state, probes, metrics, OpenAPI."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e._helpers import submit, wait_for_status

pytestmark = pytest.mark.e2e

V1_OPERATIONS = {
    ("/api/v1/tasks", "post"),
    ("/api/v1/tasks", "get"),
    ("/api/v1/tasks/{task_id}", "get"),
    ("/api/v1/tasks/{task_id}/cancel", "post"),
    ("/api/v1/tasks/{task_id}/retry", "post"),
    ("/api/v1/task-types", "get"),
    ("/api/v1/queue", "get"),
}


async def test_task_types_lists_builtin_and_custom_types_with_schemas(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/task-types")
    assert response.status_code == 200
    types = {t["name"]: t for t in response.json()["items"]}
    assert {"test", "sleep", "fail", "cpu", "greet", "e2e.ticker"} <= set(types)
    for name, described in types.items():
        schema = described["payload_schema"]
        assert schema["type"] == "object", name
        assert isinstance(described["description"], str)
    assert "seconds" in types["sleep"]["payload_schema"]["required"]
    assert types["sleep"]["payload_schema"]["properties"]["seconds"]["type"] == "number"
    assert types["greet"]["payload_schema"]["required"] == ["name"]
    assert set(types["fail"]["payload_schema"]["properties"]) == {"times", "message"}
    assert types["greet"]["description"] == "Greet someone by name."


async def test_queue_reports_depth_due_age_and_workers(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/queue")
    assert response.status_code == 200
    queue = response.json()
    assert set(queue) >= {"depth", "due", "oldest_due_age_seconds", "workers"}
    assert set(queue["depth"]) == {"blocked", "scheduled", "queued", "running"}
    assert all(isinstance(n, int) and n >= 0 for n in queue["depth"].values())
    assert isinstance(queue["due"], int)
    assert queue["due"] >= 0
    assert queue["oldest_due_age_seconds"] is None or queue["oldest_due_age_seconds"] >= 0
    assert queue["workers"] >= 1


async def test_queue_counts_a_scheduled_task(api: httpx.AsyncClient) -> None:
    before = (await api.get("/api/v1/queue")).json()["depth"]["scheduled"]
    created = await submit(api, "test", {}, delay_seconds=60)
    try:
        assert (await api.get("/api/v1/queue")).json()["depth"]["scheduled"] == before + 1
    finally:
        assert (await api.post(f"/api/v1/tasks/{created['id']}/cancel")).status_code == 200
    assert (await api.get("/api/v1/queue")).json()["depth"]["scheduled"] == before


async def test_health(api: httpx.AsyncClient) -> None:
    response = await api.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_ready_reports_each_dependency(api: httpx.AsyncClient) -> None:
    response = await api.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"postgresql": "ok", "redis": "ok"}


async def test_metrics_count_submitted_tasks(api: httpx.AsyncClient) -> None:
    created = await submit(api, "greet", {"name": "metrics"})
    await wait_for_status(api, created["id"], "succeeded")
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE taskflow_tasks_submitted_total counter" in text
    samples = [
        line for line in text.splitlines() if line.startswith('taskflow_tasks_submitted_total{task_type="greet"}')
    ]
    assert samples, text
    assert float(samples[0].rsplit(" ", 1)[1]) >= 1


async def test_openapi_lists_every_v1_operation(api: httpx.AsyncClient) -> None:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    listed = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert listed >= V1_OPERATIONS
    assert {"/health", "/ready", "/metrics"} <= set(spec["paths"])
    submit_op = spec["paths"]["/api/v1/tasks"]["post"]
    assert {"202", "409", "413", "422", "503"} <= set(submit_op["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in submit_op.get("parameters", []))


async def test_docs_page(api: httpx.AsyncClient) -> None:
    response = await api.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "openapi.json" in response.text


async def test_unknown_path_is_a_problem(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    wrong_method = await api.delete("/api/v1/tasks")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"].startswith("application/problem+json")
