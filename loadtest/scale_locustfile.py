"""The load of `make scale-test`: idle → burst → idle, as a Locust shape, into several pools' queues.

Environment: ``SCALE_IDLE_SECONDS`` (before and after), ``SCALE_BURST_SECONDS``, ``SCALE_BURST_USERS``, and
``SCALE_STREAMS``, a JSON list of ``{"queues", "seconds", "batch", "every"}`` (loadtest/scale.py ``Stream``): on every
``every``-th iteration (about one a second) each user submits ``batch`` ``sleep`` tasks of ``seconds`` into the
stream's next queue, round-robin. Each queue's batches are counted under their own name (``/api/v1/tasks/batch
<queue>``), which the harness multiplies back into tasks sent per queue.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

from locust import LoadTestShape, between, task

from loadtest.locustfile import TASKS, _TaskFlowUser

IDLE = float(os.environ.get("SCALE_IDLE_SECONDS", "5"))
BURST = float(os.environ.get("SCALE_BURST_SECONDS", "15"))
USERS = int(os.environ.get("SCALE_BURST_USERS", "2"))
STREAMS: list[dict[str, Any]] = json.loads(
    os.environ.get("SCALE_STREAMS", '[{"queues": ["default"], "seconds": 0.2, "batch": 50, "every": 1}]')
)


class SleepBurst(_TaskFlowUser):
    wait_time = between(0.8, 1.2)

    def on_start(self) -> None:
        self.iteration = 0
        self.next_queue = [itertools.cycle(stream["queues"]) for stream in STREAMS]

    @task
    def burst(self) -> None:
        self.iteration += 1
        for stream, queues in zip(STREAMS, self.next_queue, strict=True):
            if (self.iteration - 1) % int(stream.get("every", 1)):
                continue
            queue = next(queues)
            sleep = {"task_type": "sleep", "queue": queue, "payload": {"seconds": stream["seconds"]}}
            body = {"tasks": [sleep] * int(stream["batch"])}
            name = f"{TASKS}/batch {queue}"
            with self.client.post(f"{TASKS}/batch", json=body, name=name, catch_response=True) as response:
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
