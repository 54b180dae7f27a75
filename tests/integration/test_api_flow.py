"""Flow control over REST (apps/api flow.py and the submit fields), in-process over the real
PostgreSQL and Redis: happy paths, the 422 of every kind of bad input (which stores nothing),
404s and the admin scope."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from taskcore.registry import TaskRegistry
from taskcore.settings import Settings
from taskflow_api.app import create_app
from tests.conftest import AUTH_HEADERS, TEST_API_KEYS, make_settings

PROBLEM = "application/problem+json"
WRITER = "writer-key-for-the-flow-tests-0123456"
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


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://taskflow.test", headers=AUTH_HEADERS
    ) as client:
        yield client


def as_key(api: httpx.AsyncClient, key: str | None) -> httpx.AsyncClient:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.AsyncClient(transport=api._transport, base_url="http://taskflow.test", headers=headers)


async def counts(pool: asyncpg.Pool) -> tuple[int, int, int, int]:
    """Rows in tasks, limits, pauses and queues other than default: what bad input must not store."""
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM tasks) AS t, (SELECT count(*) FROM limits) AS l,
                  (SELECT count(*) FROM pauses) AS p, (SELECT count(*) FROM queues WHERE name <> 'default') AS q"""
    )
    return row["t"], row["l"], row["p"], row["q"]


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if field is not None:
        fields = [e["field"] for e in body["errors"]]
        assert any(f == field or f.startswith(field + ".") for f in fields), fields
    return body


# -- submit ---------------------------------------------------------------------------------------


async def test_submit_takes_a_queue_and_limit_keys_and_the_list_filters_by_queue(api: httpx.AsyncClient) -> None:
    sent = {"task_type": "test", "payload": {"message": "hi"}, "queue": "emails", "limit_keys": ["tenant:42", "smtp"]}
    created = await api.post("/api/v1/tasks", json=sent)
    assert created.status_code == 202, created.text
    task = created.json()
    assert (task["queue"], task["limit_keys"]) == ("emails", ["tenant:42", "smtp"])
    assert task["status"] == "queued"
    plain = (await api.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": "x"}})).json()
    assert (plain["queue"], plain["limit_keys"]) == ("default", [])
    declared = (await api.post("/api/v1/tasks", json={"task_type": "tests.flow_report", "payload": {}})).json()
    assert declared["queue"] == "reports"  # the task type's declared queue
    override = {"task_type": "tests.flow_report", "payload": {}, "queue": "default"}
    assert (await api.post("/api/v1/tasks", json=override)).json()["queue"] == "default"
    fetched = (await api.get(f"/api/v1/tasks/{task['id']}")).json()
    assert (fetched["queue"], fetched["limit_keys"]) == ("emails", ["tenant:42", "smtp"])
    listed = (await api.get("/api/v1/tasks", params={"queue": "emails"})).json()["items"]
    assert [t["id"] for t in listed] == [task["id"]]
    names = {q["name"] for q in (await api.get("/api/v1/queues")).json()}
    assert {"default", "emails", "reports"} <= names


async def test_batch_items_take_queue_and_limit_keys(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    tasks = [
        {"task_type": "test", "payload": {"message": "a"}, "queue": "bulk", "limit_keys": ["tenant:1"]},
        {"task_type": "test", "payload": {"message": "b"}},
    ]
    response = await api.post("/api/v1/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 202, response.text
    rows = await pool.fetch("SELECT queue, limit_keys FROM tasks ORDER BY queue")
    assert [(r["queue"], list(r["limit_keys"])) for r in rows] == [("bulk", ["tenant:1"]), ("default", [])]


BAD_SUBMITS = [
    ({"queue": "Upper"}, "queue"),
    ({"queue": ""}, "queue"),
    ({"queue": "-leading-dash"}, "queue"),
    ({"queue": "q" * 64}, "queue"),
    ({"queue": "a/b"}, "queue"),
    ({"queue": 7}, "queue"),
    ({"limit_keys": ["has space"]}, "limit_keys"),
    ({"limit_keys": [""]}, "limit_keys"),
    ({"limit_keys": ["k" * 101]}, "limit_keys"),
    ({"limit_keys": ["tenant:*"]}, "limit_keys"),  # a template is a limit's key, never a task's
    ({"limit_keys": ["a", "b", "c", "d", "e"]}, "limit_keys"),
    ({"limit_keys": ["a", "a"]}, "limit_keys"),
    ({"limit_keys": "tenant:1"}, "limit_keys"),
    ({"limit_keys": [1]}, "limit_keys"),
    ({"limit_keys": None}, "limit_keys"),
    ({"queues": "default"}, "queues"),
]


@pytest.mark.parametrize(("extra", "field"), BAD_SUBMITS, ids=[f"{f}={e!r}"[:60] for e, f in BAD_SUBMITS])
async def test_a_bad_queue_or_limit_key_is_a_422_naming_the_field_and_stores_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, extra: dict[str, Any], field: str
) -> None:
    body = {"task_type": "test", "payload": {"message": "hi"}, **extra}
    assert_problem(await api.post("/api/v1/tasks", json=body), 422, field)
    good = {"task_type": "test", "payload": {"message": "ok"}}
    batch = await api.post("/api/v1/tasks/batch", json={"tasks": [good, body]})
    assert_problem(batch, 422, f"tasks.1.{field}")
    assert await counts(pool) == (0, 0, 0, 0)


async def test_a_bad_queue_in_a_query_is_a_422(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get("/api/v1/tasks", params={"queue": "Bad!"}), 422, "queue")
    assert_problem(await api.get("/api/v1/load", params={"queue": "Bad!"}), 422, "queue")
    assert_problem(await api.get("/api/v1/load"), 422, "queue")


# -- queues and pauses ----------------------------------------------------------------------------


async def test_queues_show_depth_due_running_and_workers(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    for message in ("a", "b"):
        await api.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": message}, "queue": "emails"})
    later = {"task_type": "test", "payload": {"message": "c"}, "queue": "emails", "delay_seconds": 3600}
    await api.post("/api/v1/tasks", json=later)
    await pool.execute(
        """INSERT INTO workers (id, hostname, pid, started_at, last_seen_at, concurrency, queues)
           VALUES ('w-flow', 'h', 1, now(), now(), 4, '{emails,other}')"""
    )
    await pool.execute("INSERT INTO queues (name) VALUES ('other')")  # as a starting worker records its queues
    queues = {q["name"]: q for q in (await api.get("/api/v1/queues")).json()}
    emails = queues["emails"]
    assert emails["depth"] == {"scheduled": 1, "queued": 2, "running": 0}
    assert (emails["due"], emails["running"], emails["workers"], emails["paused"]) == (2, 0, 1, False)
    assert emails["oldest_due_age_seconds"] is not None
    assert emails["oldest_due_age_seconds"] >= 0
    assert queues["other"]["workers"] == 1
    assert queues["default"]["workers"] == 0
    one = await api.get("/api/v1/queues/emails")
    assert one.status_code == 200
    assert one.json() == emails | {"oldest_due_age_seconds": one.json()["oldest_due_age_seconds"]}


async def test_an_unknown_queue_is_a_404_and_a_malformed_name_a_422(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = assert_problem(await api.get("/api/v1/queues/nosuch"), 404)
    assert body["type"].endswith("queue-not-found")
    assert_problem(await api.post("/api/v1/queues/nosuch/resume"), 404)
    for path in ("/api/v1/queues/Bad!", "/api/v1/queues/Bad!/pause", "/api/v1/queues/Bad!/resume"):
        method = api.get if path.endswith("!") else api.post
        assert_problem(await method(path), 422, "name")
    assert await counts(pool) == (0, 0, 0, 0)


async def test_pause_keeps_accepting_and_resume_lets_tasks_start(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    paused = await api.post("/api/v1/queues/emails/pause")
    assert paused.status_code == 200, paused.text
    assert (paused.json()["name"], paused.json()["paused"]) == ("emails", True)
    sent = await api.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": "a"}, "queue": "emails"})
    assert sent.status_code == 202
    assert sent.json()["status"] == "queued"
    task_id = sent.json()["id"]
    assert await pool.fetchval("SELECT admitted FROM tasks WHERE id = $1", task_id) is False
    assert (await api.get("/api/v1/queues/emails")).json()["paused"] is True
    resumed = await api.post("/api/v1/queues/emails/resume")
    assert resumed.status_code == 200
    assert resumed.json()["paused"] is False
    assert await pool.fetchval("SELECT admitted FROM tasks WHERE id = $1", task_id) is True  # admitted at resume


async def test_task_types_pause_and_resume(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    paused = await api.post("/api/v1/task-types/tests.count/pause")
    assert paused.json() == {"name": "tests.count", "paused": True}
    types = {t["name"]: t for t in (await api.get("/api/v1/task-types")).json()["items"]}
    assert types["tests.count"]["paused"] is True
    assert types["tests.flow_report"]["queue"] == "reports"
    sent = await api.post("/api/v1/tasks", json={"task_type": "tests.count", "payload": {"key": "k"}})
    assert await pool.fetchval("SELECT admitted FROM tasks WHERE id = $1", sent.json()["id"]) is False
    resumed = await api.post("/api/v1/task-types/tests.count/resume")
    assert resumed.json() == {"name": "tests.count", "paused": False}
    assert await pool.fetchval("SELECT admitted FROM tasks WHERE id = $1", sent.json()["id"]) is True
    body = assert_problem(await api.post("/api/v1/task-types/nosuch/pause"), 404)
    assert body["type"].endswith("task-type-not-found")
    assert_problem(await api.post("/api/v1/task-types/nosuch/resume"), 404)
    assert await pool.fetchval("SELECT count(*) FROM pauses") == 0


ADMIN_ONLY = [
    ("POST", "/api/v1/queues/default/pause", None),
    ("POST", "/api/v1/queues/default/resume", None),
    ("POST", "/api/v1/task-types/test/pause", None),
    ("POST", "/api/v1/task-types/test/resume", None),
    ("PUT", "/api/v1/limits/stripe", {"max_running": 1}),
    ("DELETE", "/api/v1/limits/stripe", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY, ids=[f"{m} {p}" for m, p, _ in ADMIN_ONLY])
async def test_changing_flow_needs_the_admin_scope(
    api: httpx.AsyncClient, pool: asyncpg.Pool, method: str, path: str, body: Any
) -> None:
    await api.put("/api/v1/limits/stripe", json={"max_running": 5})
    before = await counts(pool)
    async with as_key(api, None) as anonymous, as_key(api, WRITER) as writer:
        assert_problem(await anonymous.request(method, path, json=body), 401)
        assert_problem(await writer.request(method, path, json=body), 403)
        assert (await writer.get("/api/v1/queues")).status_code == 200  # reading needs tasks:read only
        assert (await writer.get("/api/v1/limits")).status_code == 200
    assert await counts(pool) == before
    assert (await api.get("/api/v1/limits/stripe")).json()["max_running"] == 5


# -- limits ---------------------------------------------------------------------------------------


async def test_put_creates_then_replaces_and_get_shows_in_use(api: httpx.AsyncClient) -> None:
    created = await api.put("/api/v1/limits/stripe", json={"max_running": 2})
    assert created.status_code == 201, created.text
    assert created.json() | {"updated_at": None} == {
        "key": "stripe", "template": False, "max_running": 2, "per_second": None, "burst": None,
        "in_use": 0, "running": 0, "busiest": [], "updated_at": None,
    }  # fmt: skip
    for n in range(3):
        body = {"task_type": "test", "payload": {"message": str(n)}, "limit_keys": ["stripe"]}
        assert (await api.post("/api/v1/tasks", json=body)).status_code == 202
    limit = (await api.get("/api/v1/limits/stripe")).json()
    assert (limit["in_use"], limit["running"]) == (2, 0)  # two admitted (queued for a worker), one waits
    replaced = await api.put("/api/v1/limits/stripe", json={"max_running": 5, "per_second": 100, "burst": 3})
    assert replaced.status_code == 200
    assert (replaced.json()["max_running"], replaced.json()["per_second"], replaced.json()["burst"]) == (5, 100, 3)
    assert replaced.json()["in_use"] == 3  # a raised limit admits at once
    assert [item["key"] for item in (await api.get("/api/v1/limits")).json()] == ["stripe"]
    assert (await api.delete("/api/v1/limits/stripe")).status_code == 204
    assert_problem(await api.get("/api/v1/limits/stripe"), 404)


async def test_a_template_shows_its_busiest_keys(api: httpx.AsyncClient) -> None:
    assert (await api.put("/api/v1/limits/tenant:*", json={"max_running": 2})).status_code == 201
    for key, n in (("tenant:1", 3), ("tenant:2", 1)):
        for i in range(n):
            body = {"task_type": "test", "payload": {"message": f"{key}-{i}"}, "limit_keys": [key]}
            await api.post("/api/v1/tasks", json=body)
    limit = (await api.get("/api/v1/limits/tenant:*")).json()
    assert limit["template"] is True
    assert limit["busiest"] == [{"key": "tenant:1", "in_use": 2}, {"key": "tenant:2", "in_use": 1}]
    assert limit["in_use"] == 3
    listed = (await api.get("/api/v1/limits")).json()
    assert [item["key"] for item in listed] == ["tenant:*"]


async def test_unknown_limits_are_404(api: httpx.AsyncClient) -> None:
    for response in (await api.get("/api/v1/limits/nosuch"), await api.delete("/api/v1/limits/nosuch")):
        assert assert_problem(response, 404)["type"].endswith("limit-not-found")


BAD_LIMITS = [
    ({}, "max_running"),
    ({"max_running": 0}, "max_running"),
    ({"max_running": -1}, "max_running"),
    ({"max_running": 1.5}, "max_running"),
    ({"max_running": "3"}, "max_running"),
    ({"max_running": 2**31}, "max_running"),
    ({"per_second": 0}, "per_second"),
    ({"per_second": -2.5}, "per_second"),
    ({"per_second": 1e-30}, "per_second"),
    ({"per_second": 1e30}, "per_second"),
    ({"per_second": 5, "burst": 0}, "burst"),
    ({"per_second": 5, "burst": 2**31}, "burst"),
    ({"burst": 10}, "burst"),
    ({"max_running": 1, "burst": 10}, "burst"),
    ({"max_running": None}, "max_running"),
    ({"max_running": 1, "concurrency": 2}, "concurrency"),
]


@pytest.mark.parametrize(("body", "field"), BAD_LIMITS, ids=[repr(b)[:60] for b, _ in BAD_LIMITS])
async def test_a_bad_limit_is_a_422_naming_the_field_and_stores_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, body: dict[str, Any], field: str
) -> None:
    assert_problem(await api.put("/api/v1/limits/stripe", json=body), 422, field)
    assert await counts(pool) == (0, 0, 0, 0)


@pytest.mark.parametrize("key", ["has space", "a" * 101, "a*b", "*", "tenant:**", "ünïcode"])
async def test_a_malformed_limit_key_in_the_path_is_a_422(api: httpx.AsyncClient, pool: asyncpg.Pool, key: str) -> None:
    assert_problem(await api.put(f"/api/v1/limits/{key}", json={"max_running": 1}), 422, "key")
    assert_problem(await api.get(f"/api/v1/limits/{key}"), 422, "key")
    assert_problem(await api.delete(f"/api/v1/limits/{key}"), 422, "key")
    assert await counts(pool) == (0, 0, 0, 0)


async def test_a_limit_body_that_is_not_an_object_is_refused(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    for content in (b"", b"[]", b"null", b"3"):
        response = await api.put("/api/v1/limits/stripe", content=content, headers={"Content-Type": "application/json"})
        assert response.status_code in {400, 422}, response.text
        assert response.headers["content-type"] == PROBLEM
    assert await counts(pool) == (0, 0, 0, 0)


# -- load -----------------------------------------------------------------------------------------


async def test_load_sums_due_and_running_of_the_named_queues(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    for queue, n in (("a", 2), ("b", 3), ("c", 4)):
        for i in range(n):
            await api.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": str(i)}, "queue": queue})
    await pool.execute(
        "UPDATE tasks SET status = 'running', started_at = now(), attempt = 1 WHERE id IN "
        "(SELECT id FROM tasks WHERE queue = 'b' LIMIT 1)"
    )
    response = await api.get("/api/v1/load", params=[("queue", "a"), ("queue", "b"), ("queue", "a")])
    assert response.json() == {"queues": ["a", "b"], "due": 4, "running": 1, "load": 5}
    unknown = (await api.get("/api/v1/load", params={"queue": "nobody"})).json()
    assert unknown == {"queues": ["nobody"], "due": 0, "running": 0, "load": 0}


async def test_openapi_documents_the_flow_routes_with_their_problems(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    expected = {
        ("/api/v1/queues", "get"): {"401", "403", "503"},
        ("/api/v1/queues/{name}", "get"): {"404", "422"},
        ("/api/v1/queues/{name}/pause", "post"): {"401", "403", "422"},
        ("/api/v1/queues/{name}/resume", "post"): {"401", "403", "404", "422"},
        ("/api/v1/task-types/{name}/pause", "post"): {"401", "403", "404"},
        ("/api/v1/task-types/{name}/resume", "post"): {"401", "403", "404"},
        ("/api/v1/limits", "get"): {"401", "503"},
        ("/api/v1/limits/{key}", "get"): {"404", "422"},
        ("/api/v1/limits/{key}", "put"): {"200", "201", "401", "403", "422"},
        ("/api/v1/limits/{key}", "delete"): {"204", "403", "404", "422"},
        ("/api/v1/load", "get"): {"422"},
    }
    for (path, method), codes in expected.items():
        responses = paths[path][method]["responses"]
        assert codes <= responses.keys(), (path, method, responses.keys())
        for code in codes - {"200", "201", "204"}:
            assert "application/problem+json" in responses[code]["content"], (path, method, code)
    submit = paths["/api/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert submit["$ref"].endswith("TaskCreate")


# -- metrics --------------------------------------------------------------------------------------


async def test_metrics_have_per_queue_due_running_workers_and_paused(
    api: httpx.AsyncClient, app: FastAPI, pool: asyncpg.Pool
) -> None:
    for i in range(3):
        await api.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": str(i)}, "queue": "emails"})
    await api.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": "d"}})
    await pool.execute("UPDATE tasks SET status = 'running', started_at = now(), attempt = 1 WHERE queue = 'default'")
    await pool.execute(
        """INSERT INTO workers (id, hostname, pid, started_at, last_seen_at, concurrency, queues)
           VALUES ('w-metrics', 'h', 1, now(), now(), 4, '{default}')"""
    )
    await api.post("/api/v1/queues/emails/pause")
    state = app.state.taskflow
    await state.metrics.refresh(state.service, worker_seen_within=timedelta(seconds=10), limit=5)
    metrics = state.metrics

    def value(name: str, queue: str) -> float | None:
        found: float | None = metrics.registry.get_sample_value(name, {"queue": queue})
        return found

    assert value("taskflow_queue_due", "emails") == 3
    assert value("taskflow_queue_running", "emails") == 0
    assert value("taskflow_queue_workers", "emails") == 0  # due and no worker: the stranded-queue alert's input
    assert value("taskflow_queue_paused", "emails") == 1
    assert value("taskflow_queue_due", "default") == 0
    assert value("taskflow_queue_running", "default") == 1
    assert value("taskflow_queue_workers", "default") == 1
    assert value("taskflow_queue_paused", "default") == 0
    text = (await api.get("/metrics")).text
    assert 'taskflow_queue_workers{queue="emails"} 0.0' in text
    await api.post("/api/v1/queues/emails/resume")
    await state.metrics.refresh(state.service, worker_seen_within=timedelta(seconds=10), limit=5)
    assert value("taskflow_queue_paused", "emails") == 0
