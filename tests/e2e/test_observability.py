"""Observability of the real processes: JSON logs carrying the ids, the worker's metrics endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e._helpers import TASKS, wait_for_status, wait_until
from tests.e2e.conftest import Stack, free_port

pytestmark = pytest.mark.e2e


def json_lines(stack: Stack, name: str) -> list[dict[str, Any]]:
    """Every line of a process's log, each of which must be a JSON object."""
    lines = (stack.logs / f"{name}.log").read_text().splitlines()
    parsed = [orjson.loads(line) for line in lines if line.strip()]
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


async def test_logs_are_json_and_carry_the_request_and_task_ids(isolated_stack: Stack) -> None:
    stack = isolated_stack
    stack.start_worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        response = await api.post(
            TASKS,
            json={"task_type": "fail", "payload": {"times": 1}, "max_retries": 1},
            headers={"X-Request-ID": "req-e2e-7"},
        )
        assert response.headers["X-Request-ID"] == "req-e2e-7"
        task_id = response.json()["id"]
        await wait_for_status(api, task_id, "succeeded", within=30)

    api_lines = json_lines(stack, "api")
    submit = [line for line in api_lines if line.get("request_id") == "req-e2e-7"]
    assert submit
    assert submit[0]["route"] == TASKS
    assert submit[0]["status"] == 202
    assert submit[0]["method"] == "POST"

    async def worker_logged_success() -> bool:
        return any(line.get("event") == "task succeeded" for line in json_lines(stack, "worker-0"))

    await wait_until(worker_logged_success, within=10, what="the worker logged the success")
    task_lines = [line for line in json_lines(stack, "worker-0") if line.get("task_id") == task_id]
    events = [line["event"] for line in task_lines]
    assert "task failed, will retry" in events
    assert "task succeeded" in events
    for line in task_lines:  # every line about the task names it fully, and the request that submitted it
        assert line["task_type"] == "fail"
        assert line["request_id"] == "req-e2e-7"
        assert line["attempt"] in (1, 2)
        assert {"timestamp", "level"} <= line.keys()
    assert next(line for line in task_lines if line["event"] == "task succeeded")["attempt"] == 2


def scrape(url: str) -> dict[str, float]:
    """The samples of a Prometheus text exposition, keyed by name and labels as written."""
    samples = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


async def test_the_worker_serves_its_metrics(isolated_stack: Stack) -> None:
    stack = isolated_stack
    port = free_port()
    stack.start_worker(TASKFLOW_WORKER_METRICS_PORT=str(port))
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        batch = {"tasks": [{"task_type": "test", "payload": {"n": i}} for i in range(7)]}
        ids = [item["id"] for item in (await api.post(f"{TASKS}/batch", json=batch)).json()["items"]]
        failing = await api.post(TASKS, json={"task_type": "fail", "payload": {"times": -1}, "max_retries": 0})
        for task_id in ids:
            await wait_for_status(api, task_id, "succeeded", within=30)
        await wait_for_status(api, failing.json()["id"], "failed", within=30)

    url = f"http://127.0.0.1:{port}/metrics"
    samples = await asyncio.to_thread(scrape, url)
    assert samples['taskflow_tasks_finished_total{outcome="succeeded",task_type="test"}'] == 7
    assert samples['taskflow_tasks_finished_total{outcome="failed",task_type="fail"}'] == 1
    assert samples['taskflow_task_queue_wait_seconds_count{task_type="test"}'] == 7
    assert samples["taskflow_worker_tasks_in_flight"] == 0
    assert samples["taskflow_worker_concurrency"] == 50
    assert "process_cpu_seconds_total" in samples
    assert not any(task_id in key for key in samples for task_id in ids)
