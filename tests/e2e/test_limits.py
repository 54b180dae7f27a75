"""Hostile or greedy clients: the per-key submit rate limit (429 + Retry-After, shared by every API
process through Redis, failing open when Redis is down), security headers and CORS.

The size and range limits (payload, body, page size, delay, timeout, retries) are covered by
tests/e2e/test_bad_input.py, tests/e2e/test_query.py and tests/integration/test_api.py."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import TASKS, assert_problem, count_tasks, wait_until
from tests.e2e.conftest import CLOSED_PORT, Stack
from tests.e2e.test_auth import keygen

pytestmark = pytest.mark.e2e

BURST = 3
LIMITED = {"TASKFLOW_SUBMIT_RATE_PER_SECOND": "0.5", "TASKFLOW_SUBMIT_BURST": str(BURST)}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post(client: httpx.AsyncClient, marker: str) -> httpx.Response:
    return await client.post(TASKS, json={"task_type": "test", "payload": {"marker": marker}})


async def test_submits_over_the_burst_get_429_with_retry_after_and_store_nothing(
    stack: Stack, db: asyncpg.Pool
) -> None:
    first, first_entry = keygen("greedy", "tasks:read,tasks:write")
    second, second_entry = keygen("polite", "tasks:write")
    queue = f"{stack.env['TASKFLOW_QUEUE_NAME']}:limits-{uuid.uuid4().hex[:6]}"
    env = {**LIMITED, "TASKFLOW_API_KEYS": json.dumps([first_entry, second_entry]), "TASKFLOW_QUEUE_NAME": queue}
    # Two API processes over one Redis: the bucket is per key, not per process.
    with stack.extra_api("api-limit-a", **env) as url_a, stack.extra_api("api-limit-b", **env) as url_b:
        async with (
            httpx.AsyncClient(base_url=url_a, headers=bearer(first), timeout=10) as via_a,
            httpx.AsyncClient(base_url=url_b, headers=bearer(first), timeout=10) as via_b,
            httpx.AsyncClient(base_url=url_b, headers=bearer(second), timeout=10) as other_key,
        ):
            accepted = [await post(via_a, "a1"), await post(via_b, "b1"), await post(via_a, "a2")]
            assert [r.status_code for r in accepted] == [202] * BURST
            before = await count_tasks(db)
            refused = await post(via_b, "b2")
            body = assert_problem(refused, 429)
            assert body["type"].endswith("rate-limited")
            assert "greedy" in body["detail"]
            retry_after = int(refused.headers["Retry-After"])
            assert 1 <= retry_after <= 3  # one token per 2 s
            assert await count_tasks(db) == before

            assert (await via_a.get(TASKS, params={"limit": 1})).status_code == 200  # reads are not limited
            assert (await post(other_key, "other")).status_code == 202  # a key of its own, a bucket of its own

            async def refilled() -> bool:
                return (await post(via_a, "again")).status_code == 202

            await asyncio.sleep(retry_after)
            await wait_until(refilled, within=5, what="a token is back after Retry-After", every=0.5)


async def test_rate_limit_fails_open_when_redis_is_down(stack: Stack, db: asyncpg.Pool) -> None:
    """The limiter cannot reach Redis: submits are still stored (202), never 500, and the log says why."""
    env = {**LIMITED, "TASKFLOW_REDIS_URL": f"redis://127.0.0.1:{CLOSED_PORT}/0"}
    with stack.extra_api("api-limit-no-redis", **env) as url:
        async with httpx.AsyncClient(base_url=url, headers=stack.headers, timeout=15) as client:
            before = await count_tasks(db)
            responses = [await post(client, f"open-{n}") for n in range(BURST + 2)]
    assert [r.status_code for r in responses] == [202] * (BURST + 2)
    assert await count_tasks(db) == before + BURST + 2
    assert "rate limit not applied: redis unavailable" in stack.log("api-limit-no-redis")


def assert_security_headers(response: httpx.Response, *, html: bool = False) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    if html:
        assert "default-src 'none'" not in headers["Content-Security-Policy"]
    else:
        assert "default-src 'none'" in headers["Content-Security-Policy"]


async def test_every_kind_of_response_carries_security_headers(stack: Stack, api: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as anonymous:
        answers = {
            "task list": await api.get(TASKS),
            "submit": await post(api, "headers"),
            "validation problem": await api.post(TASKS, json={"task_type": "nope", "payload": {}}),
            "not found": await api.get(f"{TASKS}/{uuid.uuid4()}"),
            "unauthorized": await anonymous.get(TASKS),
            "body too large": await api.post(TASKS, content=b"x" * (2 * 1024 * 1024)),
            "unknown path": await anonymous.get("/nowhere"),
            "health": await anonymous.get("/health"),
            "metrics": await anonymous.get("/metrics"),
        }
        docs = await anonymous.get("/docs")
    for name, response in answers.items():
        assert_security_headers(response)
        if response.headers["content-type"].startswith(("application/json", "application/problem+json")):
            assert response.headers["Cache-Control"] == "no-store", name
    assert answers["body too large"].status_code == 413
    assert docs.headers["content-type"].startswith("text/html")
    assert_security_headers(docs, html=True)  # Swagger UI still loads its scripts


PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


async def test_cors_is_off_unless_origins_are_configured(stack: Stack) -> None:
    origin = "https://app.example.com"
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        preflight = await client.options(TASKS, headers={"Origin": origin, **PREFLIGHT})
        simple = await client.get("/health", headers={"Origin": origin})
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers

    with stack.extra_api("api-cors", TASKFLOW_CORS_ORIGINS=f"{origin}, https://other.example.com") as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            allowed = await client.options(TASKS, headers={"Origin": origin, **PREFLIGHT})
            denied = await client.options(TASKS, headers={"Origin": "https://evil.example.com", **PREFLIGHT})
            read = await client.get(TASKS, headers={"Origin": origin, **stack.headers})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == origin
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers  # bearer keys, no cookies
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers
    assert read.headers["access-control-allow-origin"] == origin
    assert "Location" in read.headers["access-control-expose-headers"]


async def test_a_batch_costs_its_size_and_one_larger_than_the_burst_leaves_the_key_in_debt(
    stack: Stack, db: asyncpg.Pool
) -> None:
    key, entry = keygen("batcher", "tasks:write")
    queue = f"{stack.env['TASKFLOW_QUEUE_NAME']}:batch-limits-{uuid.uuid4().hex[:6]}"
    env = {**LIMITED, "TASKFLOW_API_KEYS": json.dumps([entry]), "TASKFLOW_QUEUE_NAME": queue}

    def batch(size: int) -> dict[str, object]:
        return {"tasks": [{"task_type": "test", "payload": {"n": n}} for n in range(size)]}

    with stack.extra_api("api-batch-limit", **env) as url:
        async with httpx.AsyncClient(base_url=url, headers=bearer(key), timeout=10) as client:
            before = await count_tasks(db)
            # A full bucket (BURST tokens) lets a batch of 2 * BURST through: the key now owes BURST.
            assert (await client.post(f"{TASKS}/batch", json=batch(2 * BURST))).status_code == 202
            assert await count_tasks(db) == before + 2 * BURST
            refused = await client.post(f"{TASKS}/batch", json=batch(1))
            assert_problem(refused, 429)
            # BURST tokens of debt plus one for this task, at one token per 2 s.
            assert int(refused.headers["Retry-After"]) >= 2 * BURST
            assert (await post(client, "single")).status_code == 429  # single submits share the bucket
            assert await count_tasks(db) == before + 2 * BURST
