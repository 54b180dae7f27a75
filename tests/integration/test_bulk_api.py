"""POST/GET /api/v1/bulk and the new list filters, in process over the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from taskcore.settings import Settings
from tests.conftest import TEST_API_KEYS, make_settings
from tests.e2e._helpers import assert_problem
from tests.integration import test_api

# The in-process API client fixtures of test_api.
make_client = test_api.make_client
client = test_api.client

BULK = "/api/v1/bulk"


@pytest.fixture(autouse=True)
async def _no_bulk_actions(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Each test starts and ends without bulk actions (the shared fixture empties tasks only)."""
    await pool.execute("TRUNCATE bulk_actions CASCADE")
    yield
    await pool.execute("TRUNCATE bulk_actions CASCADE")


async def submit(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": "m"}, **body})
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


async def fail(pool: asyncpg.Pool, task_id: str, error_type: str = "Boom") -> None:
    await pool.execute(
        """UPDATE tasks SET status = 'failed', attempt = 1, finished_at = now(),
               error = jsonb_build_object('type', $2::text, 'message', 'x') WHERE id = $1::text::uuid""",
        task_id,
        error_type,
    )


async def test_dry_run_counts_exactly_and_stores_nothing(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    tasks = [await submit(client, payload={"message": "m", "customer_id": i % 2}) for i in range(6)]
    for t in tasks[:4]:
        await fail(pool, t["id"], "Timeout" if t["payload"]["customer_id"] else "Boom")
    body = {"action": "retry", "filter": {"payload": {"customer_id": 1}}, "dry_run": True}
    answer = await client.post(BULK, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"matched": 2, "dry_run": True}
    cancel = await client.post(BULK, json={"action": "cancel", "dry_run": True})
    assert cancel.json()["matched"] == 2
    errors = await client.post(BULK, json={"action": "retry", "filter": {"error_type": "Boom"}, "dry_run": True})
    assert errors.json()["matched"] == 2
    assert await pool.fetchval("SELECT count(*) FROM bulk_actions") == 0


async def test_a_bulk_action_is_accepted_and_reports_its_progress(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tasks = [await submit(client, delay_seconds=3600) for _ in range(3)]
    answer = await client.post(BULK, json={"action": "cancel", "filter": {"status": ["scheduled"]}})
    assert answer.status_code == 202, answer.text
    started = answer.json()
    assert answer.headers["location"] == f"{BULK}/{started['id']}"
    assert (started["matched"], started["done"], started["status"]) == (3, 0, "running")
    assert started["actor"] == "test-suite"
    assert started["filter"] == {"status": ["scheduled"]}
    shown = await client.get(f"{BULK}/{started['id']}")
    assert shown.status_code == 200
    for key in ("matched", "done", "succeeded", "skipped", "failed", "status"):
        assert key in shown.json()
    assert await pool.fetchval("SELECT count(*) FROM bulk_action_items WHERE outcome IS NULL") == len(tasks)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "delete"}, "action"),
        ({}, "action"),
        ({"action": "retry", "filter": {"status": ["bogus"]}}, "filter.status"),
        ({"action": "retry", "filter": {"status": ["succeeded"]}}, "filter.status"),
        ({"action": "cancel", "filter": {"status": ["failed"]}}, "filter.status"),
        ({"action": "retry", "filter": {"colour": "red"}}, "filter.colour"),
        ({"action": "retry", "extra": 1}, "extra"),
        ({"action": "retry", "filter": {"created_after": "yesterday"}}, "filter.created_after"),
        ({"action": "retry", "filter": {"queue": "Not A Queue"}}, "filter.queue"),
        ({"action": "retry", "filter": {"limit_key": "a b"}}, "filter.limit_key"),
        ({"action": "retry", "filter": {"payload": [1, 2]}}, "filter.payload"),
        ({"action": "retry", "filter": {"payload": {"k": "nul\u0000"}}}, "filter.payload"),
        ({"action": "retry", "filter": {"payload": {"k": "x" * 5000}}}, "filter.payload"),
        ({"action": "retry", "filter": {"error_type": ""}}, "filter.error_type"),
        ({"action": "retry", "dry_run": "perhaps"}, "dry_run"),
    ],
)
async def test_bad_input_is_a_problem_naming_the_field_and_nothing_is_stored(
    client: httpx.AsyncClient, pool: asyncpg.Pool, body: dict[str, Any], field: str
) -> None:
    assert_problem(await client.post(BULK, json=body), 422, field)
    assert await pool.fetchval("SELECT count(*) FROM bulk_actions") == 0


async def test_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{BULK}/00000000-0000-4000-8000-000000000000"), 404)
    assert_problem(await client.get(f"{BULK}/nope"), 422, "bulk_id")


async def test_bulk_needs_the_admin_scope(make_client: Any, settings: Settings) -> None:
    key = "tf_test_writer_only_key_0123456789abcdef"
    keys = [
        *TEST_API_KEYS,
        {"name": "writer", "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": ["tasks:write", "tasks:read"]},
    ]
    scoped: httpx.AsyncClient = await make_client(
        make_settings(settings.database_url, settings.queue_name, api_keys=keys)
    )
    headers = {"Authorization": f"Bearer {key}"}
    assert_problem(await scoped.post(BULK, json={"action": "retry", "dry_run": True}, headers=headers), 403)
    assert_problem(await scoped.get(f"{BULK}/00000000-0000-4000-8000-000000000000", headers=headers), 403)


async def test_the_list_filters_by_limit_key_error_type_and_payload(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    a = await submit(
        client, payload={"message": "a", "customer_id": 42, "tier": {"gold": True}}, limit_keys=["tenant:9"]
    )
    b = await submit(client, payload={"message": "b", "customer_id": 7})
    await fail(pool, b["id"], "Timeout")

    async def ids(**params: Any) -> set[str]:
        answer = await client.get("/api/v1/tasks", params=params)
        assert answer.status_code == 200, answer.text
        return {t["id"] for t in answer.json()["items"]}

    assert await ids(limit_key="tenant:9") == {a["id"]}
    assert await ids(payload='{"customer_id": 42}') == {a["id"]}
    assert await ids(payload='{"tier": {"gold": true}}') == {a["id"]}
    assert await ids(payload='{"customer_id": "42"}') == set()  # containment is typed
    assert await ids(error_type="Timeout") == {b["id"]}
    assert await ids(payload="{}") == {a["id"], b["id"]}
    for bad in ("[1]", "{nope", '"x"'):
        assert_problem(await client.get("/api/v1/tasks", params={"payload": bad}), 422, "payload")
    assert_problem(await client.get("/api/v1/tasks", params={"limit_key": "a b"}), 422, "limit_key")
    await asyncio.sleep(0)
