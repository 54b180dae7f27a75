"""Cancelling: a waiting task at once, a running one by stopping its handler, a finished one never."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis

from tests.e2e._helpers import TASKS, assert_problem, submit, task_row, wait_for_status, wait_until
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_cancel_scheduled_task_never_runs(
    api: httpx.AsyncClient, db: asyncpg.Pool, arq_redis: ArqRedis, stack: Stack, tmp_path: Path
) -> None:
    ticks = tmp_path / "never.txt"
    created = await submit(api, "e2e.ticker", {"path": str(ticks), "seconds": 1}, delay_seconds=1)
    assert created["status"] == "scheduled"
    queue = stack.env["TASKFLOW_QUEUE_NAME"]
    assert await arq_redis.zscore(queue, created["id"]) is not None

    response = await api.post(f"{TASKS}/{created['id']}/cancel")
    assert response.status_code == 200
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"] is not None
    assert await arq_redis.zscore(queue, created["id"]) is None  # its job is gone from the queue

    await asyncio.sleep(1.5)  # past its due time, with a reconciler pass or more in between
    after = (await api.get(f"{TASKS}/{created['id']}")).json()
    assert after["status"] == "cancelled"
    assert after["attempt"] == 0
    assert after["started_at"] is None
    assert not ticks.exists(), "the cancelled task's handler ran"
    row = await task_row(db, created["id"])
    assert (row["status"], row["attempt"], row["started_at"]) == ("cancelled", 0, None)


async def test_cancel_far_future_task(api: httpx.AsyncClient) -> None:
    created = await submit(api, "sleep", {"seconds": 0}, delay_seconds=60)
    response = await api.post(f"{TASKS}/{created['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancel_requested"] is True


async def test_cancel_running_sleep(api: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    created = await submit(api, "sleep", {"seconds": 30})
    await wait_for_status(api, created["id"], "running", within=5)

    response = await api.post(f"{TASKS}/{created['id']}/cancel")
    assert response.status_code == 202
    requested = response.json()
    assert requested["status"] == "running"
    assert requested["cancel_requested"] is True

    done = await wait_for_status(api, created["id"], "cancelled", within=2.5)
    assert done["finished_at"] is not None
    assert done["result"] is None
    assert done["attempt"] == 1
    row = await task_row(db, created["id"])
    assert row["lease_expires_at"] is None
    assert row["worker_id"] is None


async def test_cancelled_running_handler_really_stops(api: httpx.AsyncClient, tmp_path: Path) -> None:
    ticks = tmp_path / "ticks.txt"
    created = await submit(api, "e2e.ticker", {"path": str(ticks), "seconds": 30, "interval": 0.05})
    await wait_for_status(api, created["id"], "running", within=5)

    async def ticking() -> bool:
        return lines(ticks) >= 5

    await wait_until(ticking, within=5, what="the ticker writes its lines")
    response = await api.post(f"{TASKS}/{created['id']}/cancel")
    assert response.status_code == 202
    await wait_for_status(api, created["id"], "cancelled", within=2.5)

    stopped_at = lines(ticks)
    await asyncio.sleep(0.6)  # a dozen ticks' worth
    assert lines(ticks) == stopped_at, "the handler kept running after its task was cancelled"


@pytest.mark.parametrize(
    ("task_type", "payload", "status"),
    [
        ("test", {"message": "done"}, "succeeded"),
        ("fail", {"times": -1}, "failed"),
    ],
)
async def test_cancel_finished_task_is_409(
    api: httpx.AsyncClient, task_type: str, payload: dict[str, object], status: str
) -> None:
    created = await submit(api, task_type, payload, max_retries=0)
    await wait_for_status(api, created["id"], status)
    problem = assert_problem(await api.post(f"{TASKS}/{created['id']}/cancel"), 409)
    assert status in problem["detail"]
    assert (await api.get(f"{TASKS}/{created['id']}")).json()["status"] == status


async def test_cancel_twice_is_409(api: httpx.AsyncClient) -> None:
    created = await submit(api, "test", {}, delay_seconds=60)
    assert (await api.post(f"{TASKS}/{created['id']}/cancel")).status_code == 200
    assert_problem(await api.post(f"{TASKS}/{created['id']}/cancel"), 409)


async def test_cancelled_task_can_be_retried(api: httpx.AsyncClient) -> None:
    created = await submit(api, "test", {"message": "second chance"}, delay_seconds=60)
    assert (await api.post(f"{TASKS}/{created['id']}/cancel")).status_code == 200
    response = await api.post(f"{TASKS}/{created['id']}/retry")
    assert response.status_code == 202
    assert response.json()["status"] in {"queued", "running", "succeeded"}
    done = await wait_for_status(api, created["id"], "succeeded", within=5)
    assert done["result"]["echo"] == {"message": "second chance"}
    assert done["attempt"] == 1
    assert done["cancel_requested"] is False
