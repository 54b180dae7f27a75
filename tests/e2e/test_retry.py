"""Failures: automatic retries with backoff, the recorded error, and manual retry of a failed task."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e._helpers import JSON, TASKS, assert_problem, parse_time, submit, wait_for_status

pytestmark = pytest.mark.e2e

BACKOFF_BASE = 0.2  # TASKFLOW_RETRY_BACKOFF_BASE_SECONDS of the stack


def min_backoff(attempt: int) -> float:
    """Equal jitter: the delay after failed attempt n is at least half of base * 2^(n-1)."""
    return float(BACKOFF_BASE * 2 ** (attempt - 1) / 2)


def assert_failed_error(task: JSON, attempt: int) -> None:
    assert task["status"] == "failed"
    assert task["attempt"] == attempt
    assert task["result"] is None
    error = task["error"]
    assert error["type"] == "DeliberateFailure"
    assert error["message"] == f"deliberate failure (attempt {attempt})"
    assert error["attempt"] == attempt
    assert "Traceback (most recent call last)" in error["traceback"]
    assert "DeliberateFailure: deliberate failure" in error["traceback"]


async def test_failing_task_is_retried_then_failed_and_can_be_retried(api: httpx.AsyncClient) -> None:
    created = await submit(api, "fail", {"times": -1}, max_retries=2)
    failed = await wait_for_status(api, created["id"], "failed", within=10)
    assert_failed_error(failed, attempt=3)  # the first run and two retries
    # two backoff delays lay between the three attempts
    took = (parse_time(failed["finished_at"]) - parse_time(failed["created_at"])).total_seconds()
    assert took >= min_backoff(1) + min_backoff(2), took

    response = await api.post(f"{TASKS}/{created['id']}/retry")
    assert response.status_code == 202
    requeued = response.json()
    assert requeued["status"] in {"queued", "running"}
    assert requeued["attempt"] in {0, 1}  # the attempt count starts again
    assert requeued["error"] is None
    assert requeued["finished_at"] is None

    again = await wait_for_status(api, created["id"], "failed", within=10)
    assert_failed_error(again, attempt=3)
    assert parse_time(again["started_at"]) > parse_time(failed["finished_at"])


async def test_task_failing_once_succeeds_on_the_second_attempt(api: httpx.AsyncClient) -> None:
    created = await submit(api, "fail", {"times": 1}, max_retries=2)
    done = await wait_for_status(api, created["id"], "succeeded", "failed", within=10)
    assert done["status"] == "succeeded"
    assert done["attempt"] == 2
    assert done["result"] == {"succeeded_on_attempt": 2}
    assert done["error"] is None


async def test_no_retries_fails_on_the_first_error(api: httpx.AsyncClient) -> None:
    created = await submit(api, "fail", {"times": -1, "message": "nope"}, max_retries=0)
    failed = await wait_for_status(api, created["id"], "failed")
    assert failed["attempt"] == 1
    assert failed["error"]["message"] == "nope (attempt 1)"


async def test_timeout_fails_the_attempt(api: httpx.AsyncClient) -> None:
    created = await submit(api, "sleep", {"seconds": 10}, timeout_seconds=1, max_retries=0)
    failed = await wait_for_status(api, created["id"], "failed", within=5)
    assert failed["attempt"] == 1
    assert failed["error"]["type"] == "TaskTimeout"
    assert "1s" in failed["error"]["message"]


async def test_retry_of_a_succeeded_task_is_409(api: httpx.AsyncClient) -> None:
    created = await submit(api, "test", {})
    await wait_for_status(api, created["id"], "succeeded")
    problem = assert_problem(await api.post(f"{TASKS}/{created['id']}/retry"), 409)
    assert "succeeded" in problem["detail"]
    assert (await api.get(f"{TASKS}/{created['id']}")).json()["attempt"] == 1


async def test_retry_of_a_waiting_task_is_409(api: httpx.AsyncClient) -> None:
    created = await submit(api, "test", {}, delay_seconds=60)
    try:
        assert_problem(await api.post(f"{TASKS}/{created['id']}/retry"), 409)
    finally:
        await api.post(f"{TASKS}/{created['id']}/cancel")
