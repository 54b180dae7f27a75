"""taskflow_client (sync and async) against the real API and worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from taskflow_client import (
    AsyncClient,
    Client,
    Conflict,
    NotFound,
    TaskStatus,
    TransportError,
    ValidationFailed,
)
from tests.e2e.conftest import CLOSED_PORT, Stack

pytestmark = pytest.mark.e2e

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def api_key(stack: Stack) -> str | None:
    """The key the stack's requests carry (None while auth is off)."""
    header = stack.headers.get("Authorization", "")
    return header.removeprefix("Bearer ") or None


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.url, api_key=api_key(stack), timeout=10) as tf:
        yield tf


def test_submit_and_wait_returns_the_result(client: Client) -> None:
    task = client.submit("test", {"message": "from the client"}, wait=True, wait_timeout=60)
    assert task.status is TaskStatus.SUCCEEDED
    assert task.result["echo"] == {"message": "from the client"}
    assert client.get(task.id) == task


def test_wait_timeout_returns_the_task_as_it_is(client: Client) -> None:
    task = client.submit("sleep", {"seconds": 30}, wait=True, wait_timeout=1)
    assert task.status in {TaskStatus.QUEUED, TaskStatus.RUNNING}
    cancelled = client.cancel(task.id)
    assert cancelled.cancel_requested
    assert client.wait(task.id, timeout=30).status is TaskStatus.CANCELLED
    again = client.retry(task.id)
    assert again.status is TaskStatus.QUEUED
    assert again.attempt == 0
    client.cancel(task.id)


def test_list_filters_and_iterates_pages(client: Client) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    ids = {client.submit("test", {"message": f"page {i}"}, delay_seconds=300).id for i in range(5)}
    page = client.list(status="scheduled", created_after=since, limit=2)
    assert len(page.items) == 2
    assert page.next_cursor is not None
    seen = [t.id for t in client.iter_tasks(status=[TaskStatus.SCHEDULED], created_after=since, page_size=2)]
    assert set(seen) >= ids
    assert len(seen) == len(set(seen))
    created = [t.created_at for t in client.iter_tasks(status="scheduled", created_after=since, page_size=2)]
    assert created == sorted(created, reverse=True)
    for task_id in ids:
        client.cancel(task_id)


def test_types_queue_and_events(client: Client) -> None:
    types = {t.name: t for t in client.task_types()}
    assert "seconds" in types["sleep"].payload_schema["properties"]
    assert client.queue().workers >= 1
    task = client.submit("sleep", {"seconds": 0.3})
    states = [t.status for t in client.events(task.id)]
    assert states[-1] is TaskStatus.SUCCEEDED
    assert len(states) == len(set(states))


def test_errors_are_typed(client: Client) -> None:
    with pytest.raises(NotFound) as missing:
        client.get(UNKNOWN)
    assert missing.value.status == 404
    with pytest.raises(ValidationFailed) as invalid:
        client.submit("sleep", {"seconds": -1})
    assert invalid.value.fields == ["payload.seconds"]
    done = client.submit("test", {"message": "done"}, wait=True, wait_timeout=60)
    with pytest.raises(Conflict):
        client.cancel(done.id)
    with pytest.raises(NotFound):
        list(client.events(UNKNOWN))


def test_nothing_listening_is_a_transport_error() -> None:
    with (
        Client(f"http://127.0.0.1:{CLOSED_PORT}", retries=2, max_retry_wait=0.1) as nowhere,
        pytest.raises(TransportError),
    ):
        nowhere.queue()


async def test_async_client(stack: Stack) -> None:
    async with AsyncClient(stack.url, api_key=api_key(stack)) as tf:
        task = await tf.submit("test", {"message": "async"}, wait=True, wait_timeout=60)
        assert task.status is TaskStatus.SUCCEEDED
        assert (await tf.get(task.id, wait=1)).status is TaskStatus.SUCCEEDED
        states = [t.status async for t in tf.events(task.id)]
        assert states == [TaskStatus.SUCCEEDED]
        ids = [t.id async for t in tf.iter_tasks(task_type="test", page_size=1) if t.id == task.id]
        assert ids == [task.id]
        assert "test" in {t.name for t in await tf.task_types()}
        assert (await tf.queue()).workers >= 1
        with pytest.raises(NotFound):
            await tf.retry(UNKNOWN)
        with pytest.raises(Conflict):
            await tf.retry(task.id)


def test_flow_control_with_the_blocking_client(client: Client) -> None:
    key = f"e2e-client-{datetime.now(UTC).timestamp():.0f}"
    limit = client.set_limit(key, max_running=1, per_second=50, burst=2)
    try:
        assert (limit.max_running, limit.per_second, limit.burst) == (1, 50, 2)
        task = client.submit("test", {"message": "limited"}, limit_keys=[key], wait=True, wait_timeout=60)
        assert task.status is TaskStatus.SUCCEEDED
        assert (task.queue, task.limit_keys) == ("default", [key])
        assert client.limit(key).in_use == 0  # the finished task freed its slot
        assert key in {item.key for item in client.limits()}
        default = client.queue("default")
        assert default.workers >= 1
        assert "default" in {q.name for q in client.queues()}
        assert client.load(["default"]).queues == ["default"]
        with pytest.raises(ValidationFailed):
            client.set_limit(key, burst=1)
    finally:
        client.delete_limit(key)
    with pytest.raises(NotFound):
        client.limit(key)
