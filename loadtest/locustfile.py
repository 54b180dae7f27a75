"""Locust scenarios against a running TaskFlow (`make load`, the bench and the scaling harness).

User classes (pick them by name on the command line; each one's tasks carry its tag):

- ``SteadySubmitter`` (tag ``steady``): one task a second per user, then polls it until it is terminal;
- ``BurstSubmitter`` (tag ``burst``): batches of ``TASKFLOW_LOAD_BATCH`` tasks through ``/tasks/batch``;
- ``MixedUser`` (tag ``mixed``): every built-in type (``test``, short ``sleep``, ``fail`` with
  retries, small ``cpu``), cancelling some of the sleeps;
- ``Reader`` (tag ``read``): lists with filters and cursor pages, reads tasks and the queue;
- ``FixedRateSubmitter`` (tag ``rate``): single submits only, one a second per user (N users →
  N requests/s), for latency at a fixed rate.

Environment: ``TASKFLOW_API_KEY`` (sent as ``Authorization: Bearer …`` when set),
``TASKFLOW_LOAD_HEADERS`` (a JSON object of extra request headers),
``TASKFLOW_LOAD_BATCH`` (default 100), ``TASKFLOW_LOAD_SLEEP_SECONDS`` (default 0.5).
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from locust import FastHttpUser, between, constant_throughput, tag, task

TASKS = "/api/v1/tasks"
TERMINAL = {"succeeded", "failed", "cancelled"}
BATCH = int(os.environ.get("TASKFLOW_LOAD_BATCH", "100"))
SLEEP_SECONDS = float(os.environ.get("TASKFLOW_LOAD_SLEEP_SECONDS", "0.5"))
POLL_LIMIT_SECONDS = 30.0


def _headers() -> dict[str, str]:
    headers: dict[str, str] = json.loads(os.environ.get("TASKFLOW_LOAD_HEADERS", "{}"))
    key = os.environ.get("TASKFLOW_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


class _TaskFlowUser(FastHttpUser):
    abstract = True
    default_headers = _headers()

    def submit(self, task_type: str, payload: dict[str, Any], **options: Any) -> str | None:
        with self.client.post(
            TASKS,
            json={"task_type": task_type, "payload": payload, **options},
            name=f"{TASKS} [{task_type}]",
            catch_response=True,
        ) as response:
            if response.status_code != 202:
                response.failure(f"submit answered {response.status_code}: {response.text[:200]}")
                return None
            task_id: str = response.json()["id"]
            return task_id

    def wait_terminal(self, task_id: str) -> None:
        deadline = time.monotonic() + POLL_LIMIT_SECONDS
        while time.monotonic() < deadline:
            response = self.client.get(f"{TASKS}/{task_id}", name=f"{TASKS}/{{id}}")
            if response.status_code == 200 and response.json()["status"] in TERMINAL:
                return
            time.sleep(0.2)


class SteadySubmitter(_TaskFlowUser):
    wait_time = constant_throughput(1)

    @tag("steady")
    @task
    def submit_and_poll(self) -> None:
        task_id = self.submit("test", {"message": "steady"})
        if task_id:
            self.wait_terminal(task_id)


class BurstSubmitter(_TaskFlowUser):
    wait_time = between(0.5, 1.0)

    @tag("burst")
    @task
    def burst(self) -> None:
        body = {"tasks": [{"task_type": "test", "payload": {"n": i}} for i in range(BATCH)]}
        with self.client.post(f"{TASKS}/batch", json=body, name=f"{TASKS}/batch", catch_response=True) as response:
            if response.status_code != 202:
                response.failure(f"batch answered {response.status_code}: {response.text[:200]}")


class MixedUser(_TaskFlowUser):
    wait_time = between(0.2, 1.0)

    @tag("mixed")
    @task(4)
    def echo(self) -> None:
        self.submit("test", {"message": "mixed"})

    @tag("mixed")
    @task(2)
    def sleep_then_maybe_cancel(self) -> None:
        task_id = self.submit("sleep", {"seconds": SLEEP_SECONDS})
        if task_id and random.random() < 0.5:
            with self.client.post(
                f"{TASKS}/{task_id}/cancel", name=f"{TASKS}/{{id}}/cancel", catch_response=True
            ) as response:
                # 200 (cancelled), 202 (stopping) or 409 (it finished first) are all correct answers.
                if response.status_code in (200, 202, 409):
                    response.success()

    @tag("mixed")
    @task(1)
    def failing(self) -> None:
        self.submit("fail", {"times": 1}, max_retries=2)

    @tag("mixed")
    @task(1)
    def cpu(self) -> None:
        self.submit("cpu", {"rounds": 1000})


class Reader(_TaskFlowUser):
    wait_time = between(0.2, 0.5)

    @tag("read")
    @task(3)
    def list_filtered(self) -> None:
        status = random.choice(["succeeded", "queued", "failed", "cancelled"])
        response = self.client.get(f"{TASKS}?status={status}&limit=20", name=f"{TASKS}?status")
        cursor = response.json().get("next_cursor") if response.status_code == 200 else None
        if cursor:
            self.client.get(f"{TASKS}?status={status}&limit=20&cursor={cursor}", name=f"{TASKS}?cursor")

    @tag("read")
    @task(1)
    def list_by_type(self) -> None:
        self.client.get(f"{TASKS}?task_type=test&limit=50", name=f"{TASKS}?task_type")

    @tag("read")
    @task(1)
    def queue(self) -> None:
        self.client.get("/api/v1/queue")


class FixedRateSubmitter(_TaskFlowUser):
    wait_time = constant_throughput(1)

    @tag("rate")
    @task
    def submit_once(self) -> None:
        self.submit("test", {"message": "rate"})
