"""Waiting for a result without polling: ?wait=N and the /events stream, over the real processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import orjson
import pytest

from taskflow_client import AsyncClient, Unavailable
from tests.e2e._helpers import TASKS, assert_problem, submit
from tests.e2e.conftest import CLOSED_PORT, Stack

pytestmark = pytest.mark.e2e

UNKNOWN = "00000000-0000-4000-8000-000000000000"


async def test_wait_answers_when_the_task_finishes(api: httpx.AsyncClient) -> None:
    created = await submit(api, "sleep", {"seconds": 0.5})
    started = time.monotonic()
    response = await api.get(f"{TASKS}/{created['id']}", params={"wait": 40}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    assert time.monotonic() - started < 30, "wait did not return when the task finished"


async def test_wait_gives_up_after_n_seconds_with_the_current_state(api: httpx.AsyncClient) -> None:
    created = await submit(api, "sleep", {"seconds": 30})
    started = time.monotonic()
    response = await api.get(f"{TASKS}/{created['id']}", params={"wait": 1.5}, timeout=30)
    assert time.monotonic() - started >= 1.4
    assert response.status_code == 200
    assert response.json()["status"] in {"queued", "running"}
    assert (await api.post(f"{TASKS}/{created['id']}/cancel")).status_code in {200, 202}


async def test_waiting_requests_share_one_listener_connection(
    api: httpx.AsyncClient, db: asyncpg.Pool, stack: Stack
) -> None:
    created = [await submit(api, "sleep", {"seconds": 1}) for _ in range(6)]
    waits = [asyncio.create_task(api.get(f"{TASKS}/{t['id']}", params={"wait": 40}, timeout=60)) for t in created]
    await asyncio.sleep(0.3)  # let the requests subscribe
    listeners = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'taskflow-listener' "
        "AND datname = current_database()"
    )
    assert listeners == 1
    for response in await asyncio.gather(*waits):
        assert response.json()["status"] == "succeeded"


@pytest.mark.parametrize("wait", ["0", "-1", "61", "soon", "nan"])
async def test_bad_wait_is_a_problem(api: httpx.AsyncClient, wait: str) -> None:
    created = await submit(api, "test", {"message": "w"})
    assert_problem(await api.get(f"{TASKS}/{created['id']}", params={"wait": wait}), 422, "wait")


async def test_wait_and_events_on_an_unknown_task_are_404(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get(f"{TASKS}/{UNKNOWN}", params={"wait": 1}), 404)
    assert_problem(await api.get(f"{TASKS}/{UNKNOWN}/events"), 404)
    assert_problem(await api.get(f"{TASKS}/not-a-uuid/events"), 422)


async def test_events_stream_the_state_changes_and_end(api: httpx.AsyncClient) -> None:
    created = await submit(api, "sleep", {"seconds": 0.5})
    events: list[dict[str, object]] = []
    async with api.stream("GET", f"{TASKS}/{created['id']}/events", timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        async for line in response.aiter_lines():  # the server ends the stream when the task is terminal
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind == "status":
                events.append(orjson.loads(line.split(":", 1)[1]))
    statuses = [e["status"] for e in events]
    assert statuses[-1] == "succeeded"
    assert statuses[0] in {"queued", "running"}
    assert len(statuses) == len(set(statuses)), statuses
    assert all(e["id"] == created["id"] for e in events)


async def test_events_of_a_finished_task_is_one_event(api: httpx.AsyncClient) -> None:
    created = await submit(api, "test", {"message": "done"})
    await api.get(f"{TASKS}/{created['id']}", params={"wait": 30}, timeout=60)
    response = await api.get(f"{TASKS}/{created['id']}/events", timeout=30)
    assert response.status_code == 200
    assert response.text.count("event: status") == 1
    assert '"succeeded"' in response.text


async def test_postgresql_down_is_503_and_the_client_retries_after_retry_after(stack: Stack) -> None:
    down = f"postgresql://postgres@127.0.0.1:{CLOSED_PORT}/taskflow"
    with stack.extra_api("api-no-pg-wait", TASKFLOW_DATABASE_URL=down) as url:
        async with httpx.AsyncClient(base_url=url, headers=stack.headers, timeout=30) as degraded:
            for path in (f"{TASKS}/{UNKNOWN}?wait=1", f"{TASKS}/{UNKNOWN}/events"):
                response = await degraded.get(path)
                assert_problem(response, 503)
                assert int(response.headers["Retry-After"]) > 0

        sent: list[httpx.Request] = []
        key = stack.headers.get("Authorization", "").removeprefix("Bearer ") or None
        async with (
            httpx.AsyncClient(event_hooks={"request": [_record(sent)]}) as http,
            AsyncClient(url, api_key=key, retries=1, http_client=http) as client,
        ):
            started = time.monotonic()
            with pytest.raises(Unavailable) as unavailable:
                await client.get(UNKNOWN, wait=1)
            assert unavailable.value.retry_after == 5
            assert len(sent) == 2  # the first try and one retry
            assert time.monotonic() - started >= 4.5, "the retry did not wait for Retry-After"


def _record(sent: list[httpx.Request]) -> Callable[[httpx.Request], Awaitable[None]]:
    async def hook(request: httpx.Request) -> None:
        sent.append(request)

    return hook
