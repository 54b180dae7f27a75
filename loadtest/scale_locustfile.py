"""The load of `make scale-test`: idle → burst → idle, as a Locust shape.

Environment: ``SCALE_IDLE_SECONDS`` (before and after), ``SCALE_BURST_SECONDS``, ``SCALE_BURST_USERS``;
each user submits batches of ``TASKFLOW_LOAD_BATCH`` ``sleep`` tasks of ``TASKFLOW_LOAD_SLEEP_SECONDS``.
"""

from __future__ import annotations

import os

from locust import LoadTestShape, between, task

from loadtest.locustfile import BATCH, SLEEP_SECONDS, TASKS, _TaskFlowUser

IDLE = float(os.environ.get("SCALE_IDLE_SECONDS", "5"))
BURST = float(os.environ.get("SCALE_BURST_SECONDS", "15"))
USERS = int(os.environ.get("SCALE_BURST_USERS", "2"))


class SleepBurst(_TaskFlowUser):
    wait_time = between(0.8, 1.2)

    @task
    def burst(self) -> None:
        body = {"tasks": [{"task_type": "sleep", "payload": {"seconds": SLEEP_SECONDS}} for _ in range(BATCH)]}
        with self.client.post(f"{TASKS}/batch", json=body, name=f"{TASKS}/batch", catch_response=True) as response:
            if response.status_code != 202:
                response.failure(f"batch answered {response.status_code}")


class IdleBurstIdle(LoadTestShape):
    """No users, then ``USERS`` for ``BURST`` seconds, then none again until the end."""

    def tick(self) -> tuple[int, float] | None:
        elapsed: float = self.get_run_time()  # type: ignore[no-untyped-call]
        if elapsed < IDLE:
            return (0, 100)
        if elapsed < IDLE + BURST:
            return (USERS, 100)
        if elapsed < 2 * IDLE + BURST:
            return (0, 100)
        return None
