"""Reading tasks back: one task by id, and the filtered, keyset-paginated list."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.e2e._helpers import JSON, TASKS, assert_problem, parse_time, submit, wait_for_status

pytestmark = pytest.mark.e2e

TASK_FIELDS = {
    "id",
    "task_type",
    "payload",
    "status",
    "priority",
    "attempt",
    "max_retries",
    "timeout_seconds",
    "created_at",
    "run_at",
    "started_at",
    "finished_at",
    "cancel_requested",
    "result",
    "error",
    "links",
}


async def list_tasks(api: httpx.AsyncClient, **params: Any) -> JSON:
    response = await api.get(TASKS, params=params)
    assert response.status_code == 200, response.text
    body: JSON = response.json()
    return body


async def test_get_one_task(api: httpx.AsyncClient) -> None:
    created = await submit(api, "test", {"message": "get me"})
    done = await wait_for_status(api, created["id"], "succeeded")
    assert set(done) >= TASK_FIELDS
    assert done["id"] == created["id"]
    assert done["payload"] == {"message": "get me"}
    assert done["links"] == {
        "self": f"{TASKS}/{created['id']}",
        "cancel": f"{TASKS}/{created['id']}/cancel",
        "retry": f"{TASKS}/{created['id']}/retry",
    }
    created_at, started, finished = (parse_time(done[k]) for k in ("created_at", "started_at", "finished_at"))
    assert created_at <= started <= finished
    assert done["error"] is None


async def test_get_unknown_task_is_404(api: httpx.AsyncClient) -> None:
    unknown = uuid.uuid4()
    problem = assert_problem(await api.get(f"{TASKS}/{unknown}"), 404)
    assert str(unknown) in problem["detail"]
    for action in ("cancel", "retry"):
        assert_problem(await api.post(f"{TASKS}/{unknown}/{action}"), 404)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g"])
async def test_get_malformed_id_is_422(api: httpx.AsyncClient, bad_id: str) -> None:
    assert_problem(await api.get(f"{TASKS}/{bad_id}"), 422, "task_id")
    assert_problem(await api.post(f"{TASKS}/{bad_id}/cancel"), 422, "task_id")
    assert_problem(await api.post(f"{TASKS}/{bad_id}/retry"), 422, "task_id")


@pytest.fixture
async def mixed_tasks(api: httpx.AsyncClient) -> tuple[datetime, datetime, dict[str, JSON]]:
    """One succeeded, one failed, one cancelled and one scheduled task, created in a window of their own."""
    start = datetime.now(UTC)
    made = {
        "succeeded": await submit(api, "test", {"message": "ok"}),
        "failed": await submit(api, "fail", {"times": -1}, max_retries=0),
        "cancelled": await submit(api, "test", {}, delay_seconds=60),
        "scheduled": await submit(api, "greet", {"name": "later"}, delay_seconds=60),
    }
    assert (await api.post(f"{TASKS}/{made['cancelled']['id']}/cancel")).status_code == 200
    for status in ("succeeded", "failed"):
        await wait_for_status(api, made[status]["id"], status)
    end = datetime.now(UTC)
    return start, end, made


async def test_list_filters(api: httpx.AsyncClient, mixed_tasks: tuple[datetime, datetime, dict[str, JSON]]) -> None:
    start, end, made = mixed_tasks
    window = {"created_after": start.isoformat(), "created_before": end.isoformat()}
    try:
        everything = await list_tasks(api, **window)
        assert {t["id"] for t in everything["items"]} == {t["id"] for t in made.values()}
        assert everything["next_cursor"] is None

        for status, task in made.items():
            only = await list_tasks(api, status=status, **window)
            assert [t["id"] for t in only["items"]] == [task["id"]]

        # status is repeatable: ?status=failed&status=cancelled
        params = httpx.QueryParams([("status", "failed"), ("status", "cancelled"), *window.items()])
        both = (await api.get(TASKS, params=params)).json()
        assert {t["id"] for t in both["items"]} == {made["failed"]["id"], made["cancelled"]["id"]}
        assert {t["status"] for t in both["items"]} == {"failed", "cancelled"}

        by_type = await list_tasks(api, task_type="fail", **window)
        assert [t["id"] for t in by_type["items"]] == [made["failed"]["id"]]
        assert (await list_tasks(api, task_type="greet", status="succeeded", **window))["items"] == []

        # created_after / created_before are exclusive bounds on the creation time
        middle = parse_time(made["failed"]["created_at"])
        newer = await list_tasks(api, created_after=middle.isoformat(), created_before=end.isoformat())
        assert {t["id"] for t in newer["items"]} == {made["cancelled"]["id"], made["scheduled"]["id"]}
        older = await list_tasks(api, created_after=start.isoformat(), created_before=middle.isoformat())
        assert {t["id"] for t in older["items"]} == {made["succeeded"]["id"]}
        # any offset is accepted and means the same instant
        shifted = middle.astimezone(timezone(timedelta(hours=-7)))
        assert (await list_tasks(api, created_after=shifted.isoformat(), created_before=end.isoformat())) == newer
    finally:
        await api.post(f"{TASKS}/{made['scheduled']['id']}/cancel")


async def test_keyset_pagination_walks_every_task_once_newest_first(api: httpx.AsyncClient) -> None:
    start = datetime.now(UTC)
    ids = [(await submit(api, "test", {"n": n}))["id"] for n in range(7)]
    end = datetime.now(UTC)
    window = {"created_after": start.isoformat(), "created_before": end.isoformat()}

    seen: list[JSON] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": 2, **window, **({"cursor": cursor} if cursor else {})}
        page = await list_tasks(api, **params)
        pages += 1
        assert len(page["items"]) <= 2
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "pagination does not end"
    assert pages == 4
    walked = [t["id"] for t in seen]
    assert len(walked) == len(set(walked)), "a task appeared on two pages"
    assert walked == list(reversed(ids)), "not every task exactly once, newest first"
    keys = [(parse_time(t["created_at"]), uuid.UUID(t["id"])) for t in seen]
    assert keys == sorted(keys, reverse=True)
    # one page of everything agrees with the walk
    assert [t["id"] for t in (await list_tasks(api, limit=100, **window))["items"]] == walked


async def test_pagination_with_a_filter_and_an_exact_multiple(api: httpx.AsyncClient) -> None:
    start = datetime.now(UTC)
    ids = [(await submit(api, "greet", {"name": f"p{n}"}))["id"] for n in range(4)]
    await submit(api, "test", {})  # another type in the same window: filtered out
    end = datetime.now(UTC)
    first = await list_tasks(
        api, task_type="greet", limit=2, created_after=start.isoformat(), created_before=end.isoformat()
    )
    assert first["next_cursor"] is not None
    second = await list_tasks(
        api,
        task_type="greet",
        limit=2,
        cursor=first["next_cursor"],
        created_after=start.isoformat(),
        created_before=end.isoformat(),
    )
    assert second["next_cursor"] is None  # four tasks, two full pages: no empty third page
    assert [t["id"] for t in first["items"] + second["items"]] == list(reversed(ids))


@pytest.mark.parametrize("limit", [0, -1, 101, "ten"])
async def test_list_limit_out_of_range_is_422(api: httpx.AsyncClient, limit: int | str) -> None:
    assert_problem(await api.get(TASKS, params={"limit": limit}), 422, "limit")


async def test_list_limit_100_is_allowed(api: httpx.AsyncClient) -> None:
    assert len((await list_tasks(api, limit=100))["items"]) <= 100


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        "%%%",
        _b64(b"not json"),
        _b64(b"[1, 2]"),
        _b64(b"null"),
        _b64(b'{"a": 1}'),
        _b64(b'["2024-01-01T00:00:00+00:00", "not-a-uuid"]'),
        _b64(b'["yesterday", "7f8c2c9e-7f7e-4c43-9c55-3a4c6f0f8f1e"]'),
        _b64(b'["2024-01-01T00:00:00+00:00", "7f8c2c9e-7f7e-4c43-9c55-3a4c6f0f8f1e", 3]'),
        _b64(b"\xff\xfe\xfd"),
        "x" * 600,
    ],
)
async def test_list_garbage_cursor_is_422_naming_cursor(api: httpx.AsyncClient, cursor: str) -> None:
    assert_problem(await api.get(TASKS, params={"cursor": cursor}), 422, "cursor")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"created_after": "2024-01-01T00:00:00"}, "created_after"),  # no offset
        ({"created_before": "last week"}, "created_before"),
        ({"task_type": "t" * 201}, "task_type"),
    ],
)
async def test_list_bad_filters_are_422(api: httpx.AsyncClient, params: dict[str, str], field: str) -> None:
    assert_problem(await api.get(TASKS, params=params), 422, field)


UUID_TEXT = b"7f8c2c9e-7f7e-4c43-9c55-3a4c6f0f8f1e"


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"task_type": "nul\x00byte"}, id="NUL in task_type"),
        pytest.param({"cursor": _b64(b'["2024-01-01T00:00:00", "' + UUID_TEXT + b'"]')}, id="cursor naive time"),
        pytest.param({"cursor": _b64(b'["0001-01-01T00:00:00+14:00", "' + UUID_TEXT + b'"]')}, id="cursor year 0"),
        pytest.param({"cursor": _b64(b'["9999-12-31T23:59:59-14:00", "' + UUID_TEXT + b'"]')}, id="cursor year 10000"),
        pytest.param({"created_after": "0001-01-01T00:00:00+14:00"}, id="created_after year 0"),
        pytest.param({"created_before": "9999-12-31T23:59:59-14:00"}, id="created_before year 10000"),
    ],
)
async def test_odd_list_parameters_never_yield_500(api: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await api.get(TASKS, params=params)
    assert response.status_code < 500, f"{response.status_code}: {response.text}"
    if response.status_code != 200:
        assert_problem(response, response.status_code)


@pytest.mark.parametrize("value", ["0.0", "1700000000"])
async def test_a_number_is_not_a_timestamp(api: httpx.AsyncClient, value: str) -> None:
    """Found by schemathesis: pydantic alone would read a number as a Unix time."""
    body = assert_problem(await api.get(TASKS, params={"created_after": value}), 422)
    assert [e["field"] for e in body["errors"]] == ["created_after"]
