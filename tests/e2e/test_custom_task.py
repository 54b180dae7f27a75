"""A user's own task type (examples/greetings.py), loaded by both processes via TASKFLOW_TASK_MODULES."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import TASKS, assert_problem, count_tasks, submit, wait_for_status

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("payload", "greeting"),
    [
        ({"name": "Ada"}, "Hello, Ada!"),
        ({"name": "Grace", "shout": True}, "HELLO, GRACE!"),
    ],
)
async def test_greet_runs_and_returns_the_greeting(
    api: httpx.AsyncClient, payload: dict[str, object], greeting: str
) -> None:
    created = await submit(api, "greet", payload)
    done = await wait_for_status(api, created["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done["error"]
    assert done["result"] == {"greeting": greeting, "attempt": 1}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "payload.name"),
        ({"name": ""}, "payload.name"),
        ({"name": "x" * 101}, "payload.name"),
        ({"name": 7}, "payload.name"),
        ({"name": "Ada", "shout": "maybe"}, "payload.shout"),
    ],
)
async def test_bad_greet_payload_is_422(
    api: httpx.AsyncClient, db: asyncpg.Pool, payload: dict[str, object], field: str
) -> None:
    before = await count_tasks(db)
    assert_problem(await api.post(TASKS, json={"task_type": "greet", "payload": payload}), 422, field)
    assert await count_tasks(db) == before
