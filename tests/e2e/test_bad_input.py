"""Bad input: always problem+json naming what is wrong, never a stored task, never a 500."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import TASKS, assert_problem, count_tasks

pytestmark = pytest.mark.e2e

LIMIT = 256 * 1024  # TASKFLOW_PAYLOAD_LIMIT_BYTES default
UNSET = object()


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def body(task_type: Any = "test", payload: Any = UNSET, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"task_type": task_type, **extra}
    out["payload"] = {"message": "hi"} if payload is UNSET else payload
    return out


# (id, JSON body, expected status, fields the errors list must name)
INVALID: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
    ("unknown task type", body("no.such.type"), 422, ("task_type",)),
    ("empty task type", body(""), 422, ("task_type",)),
    ("task type not a string", body(42), 422, ("task_type",)),
    ("missing task type", {"payload": {}}, 422, ("task_type",)),
    ("missing payload", {"task_type": "test"}, 422, ("payload",)),
    ("sleep without seconds", body("sleep", {}), 422, ("payload.seconds",)),
    ("sleep seconds not a number", body("sleep", {"seconds": "long"}), 422, ("payload.seconds",)),
    ("sleep seconds negative", body("sleep", {"seconds": -1}), 422, ("payload.seconds",)),
    ("sleep unknown payload field", body("sleep", {"seconds": 1, "extra": 1}), 422, ("payload.extra",)),
    ("fail times below -1", body("fail", {"times": -2}), 422, ("payload.times",)),
    ("cpu rounds zero", body("cpu", {"rounds": 0}), 422, ("payload.rounds",)),
    ("payload is a list", body(payload=[1, 2]), 422, ("payload",)),
    ("payload is a string", body(payload="hello"), 422, ("payload",)),
    ("payload is null", body(payload=None), 422, ("payload",)),
    ("payload is a number", body(payload=3), 422, ("payload",)),
    ("priority a word", body(priority="high"), 422, ("priority",)),
    ("priority fractional", body(priority=1.5), 422, ("priority",)),
    ("priority above 9", body(priority=10), 422, ("priority",)),
    ("priority negative", body(priority=-1), 422, ("priority",)),
    ("max_retries negative", body(max_retries=-1), 422, ("max_retries",)),
    ("max_retries above the limit", body(max_retries=26), 422, ("max_retries",)),
    ("max_retries huge", body(max_retries=10**30), 422, ("max_retries",)),
    ("timeout zero", body(timeout_seconds=0), 422, ("timeout_seconds",)),
    ("timeout above the limit", body(timeout_seconds=3601), 422, ("timeout_seconds",)),
    ("timeout a word", body(timeout_seconds="soon"), 422, ("timeout_seconds",)),
    ("delay negative", body(delay_seconds=-1), 422, ("delay_seconds",)),
    ("delay beyond the limit", body(delay_seconds=31 * 24 * 3600), 422, ("delay_seconds",)),
    ("delay absurd", body(delay_seconds=1e300), 422, ("delay_seconds",)),
    ("run_at without offset", body(run_at="2030-01-01T12:00:00"), 422, ("run_at",)),
    ("run_at not a time", body(run_at="tomorrow"), 422, ("run_at",)),
    ("run_at beyond the limit", body(run_at="2999-01-01T00:00:00Z"), 422, ("run_at",)),
    ("unknown top-level field", body(colour="blue"), 422, ("colour",)),
    ("greet without name", body("greet", {}), 422, ("payload.name",)),
]


@pytest.mark.parametrize(("request_body", "status", "fields"), [pytest.param(b, s, f, id=i) for i, b, s, f in INVALID])
async def test_invalid_submit_is_a_problem_and_stores_nothing(
    api: httpx.AsyncClient, db: asyncpg.Pool, request_body: dict[str, Any], status: int, fields: tuple[str, ...]
) -> None:
    before = await count_tasks(db)
    assert_problem(await api.post(TASKS, json=request_body), status, *fields)
    assert await count_tasks(db) == before


async def test_run_at_and_delay_seconds_together_is_422(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    before = await count_tasks(db)
    response = await api.post(TASKS, json=body(run_at="2030-01-01T00:00:00Z", delay_seconds=5))
    problem = assert_problem(response, 422)
    assert problem["errors"], problem
    named = " ".join(f"{e['field']} {e['message']}" for e in problem["errors"])
    assert "run_at" in named, problem["errors"]
    assert "delay_seconds" in named, problem["errors"]
    assert await count_tasks(db) == before


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"task_type": "test", "payload": {', "application/json"),
        (b"{'task_type': 'test'}", "application/json"),
        (b"not json at all", "application/json"),
        (b'{"task_type": "test", "payload": {}} trailing', "application/json"),
    ],
)
async def test_malformed_json_is_400(api: httpx.AsyncClient, db: asyncpg.Pool, raw: bytes, content_type: str) -> None:
    before = await count_tasks(db)
    response = await api.post(TASKS, content=raw, headers={"Content-Type": content_type})
    assert_problem(response, 400, "body")
    assert await count_tasks(db) == before


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b'"a string"', "application/json"),
        (b"null", "application/json"),
        (b'{"task_type": "test", "payload": {}}', "text/plain"),
        (b"task_type=test", "application/x-www-form-urlencoded"),
    ],
)
async def test_body_not_a_task_object_is_4xx(
    api: httpx.AsyncClient, db: asyncpg.Pool, raw: bytes, content_type: str
) -> None:
    before = await count_tasks(db)
    response = await api.post(TASKS, content=raw, headers={"Content-Type": content_type})
    assert response.status_code in {400, 415, 422}, response.text
    assert_problem(response, response.status_code)
    assert await count_tasks(db) == before


async def test_payload_over_the_limit_is_413(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    before = await count_tasks(db)
    response = await api.post(TASKS, json=body(payload={"blob": "x" * (LIMIT + 10_000)}))
    assert_problem(response, 413, "payload")
    assert await count_tasks(db) == before


async def test_request_body_far_over_the_limit_is_413(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    """The client must get to read the 413, also when it sends the whole body before reading the answer."""
    before = await count_tasks(db)
    response = await api.post(TASKS, json=body(payload={"blob": "x" * (16 * LIMIT)}))
    assert_problem(response, 413)
    assert await count_tasks(db) == before


async def test_payload_just_under_the_limit_is_accepted(api: httpx.AsyncClient) -> None:
    response = await api.post(TASKS, json=body(payload={"blob": "x" * (LIMIT - 100)}))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "header",
    ["", "k" * 256],
)
async def test_bad_idempotency_key_is_422(api: httpx.AsyncClient, db: asyncpg.Pool, header: str) -> None:
    before = await count_tasks(db)
    response = await api.post(TASKS, json=body(), headers={"Idempotency-Key": header})
    assert_problem(response, 422, "Idempotency-Key")
    assert await count_tasks(db) == before


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


# Valid JSON (as Python's parser reads it) the API must answer without a 500: accepted, or refused as bad input.
ODD_BODIES: list[tuple[str, bytes]] = [
    ("NUL character in a string", dumps(body(payload={"message": "nul \u0000 inside"}))),
    ("NUL character in a key", dumps(body(payload={"key\u0000": "value"}))),
    ("integer beyond 64 bits", dumps(body(payload={"big": 2**70}))),
    ("deeply nested arrays", dumps(body(payload={"deep": _nested(300)}))),
    ("lone surrogate escape", b'{"task_type": "test", "payload": {"message": "\\ud800"}}'),
    ("unicode everywhere", dumps(body(payload={"message": "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c \U0001f389"}))),
    ("NaN in the payload", b'{"task_type": "test", "payload": {"x": NaN}}'),
    ("Infinity as delay_seconds", b'{"task_type": "test", "payload": {}, "delay_seconds": Infinity}'),
    ("NaN as delay_seconds", b'{"task_type": "test", "payload": {}, "delay_seconds": NaN}'),
    ("NaN as sleep seconds", b'{"task_type": "sleep", "payload": {"seconds": NaN}}'),
    ("boolean priority", b'{"task_type": "test", "payload": {}, "priority": true}'),
    ("run_at before year 1 in UTC", dumps(body(run_at="0001-01-01T00:00:00+14:00"))),
    ("run_at after year 9999 in UTC", dumps(body(run_at="9999-12-31T23:59:59-14:00"))),
]


@pytest.mark.parametrize("raw", [pytest.param(raw, id=i) for i, raw in ODD_BODIES])
async def test_odd_but_parseable_input_never_yields_500(api: httpx.AsyncClient, db: asyncpg.Pool, raw: bytes) -> None:
    before = await count_tasks(db)
    response = await api.post(TASKS, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, f"{response.status_code}: {response.text}"
    if response.status_code == 202:
        assert await count_tasks(db) == before + 1
        fetched = await api.get(response.headers["Location"])
        assert fetched.status_code == 200, fetched.text
        await api.post(f"{TASKS}/{response.json()['id']}/cancel")  # if it is still waiting
    else:
        assert_problem(response, response.status_code)
        assert await count_tasks(db) == before
