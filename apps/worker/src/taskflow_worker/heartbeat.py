"""The worker's heartbeat: each beat renews its tasks' leases, records the worker, checks Redis
and sets the dependency gauges.

Each concern is one step of ``beat``; a new signal (say, the time of the last beat for a liveness
probe) is one more line in ``beat`` or in ``WorkerMetrics.beat``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from taskcore.errors import DependencyUnavailable
from taskcore.queue import TaskQueue
from taskcore.store import TaskRepository
from taskflow_worker.metrics import WorkerMetrics
from taskflow_worker.runner import TaskRunner


@dataclass(slots=True)
class Heartbeat:
    runner: TaskRunner
    repo: TaskRepository
    queue: TaskQueue
    metrics: WorkerMetrics
    worker_id: str
    concurrency: int
    queues: tuple[str, ...] = ("default",)  # the queues this worker consumes (GET /api/v1/queues counts it)

    async def beat(self) -> None:
        """One beat; raises DependencyUnavailable (after setting its gauge) when a dependency is down."""
        await self._postgresql()
        self.metrics.beat()
        await self._redis()

    async def _postgresql(self) -> None:
        try:
            await self.runner.renew_leases()
            await self.repo.worker_seen(
                worker_id=self.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                concurrency=self.concurrency,
                queues=self.queues,
            )
        except DependencyUnavailable:
            self.metrics.dependency_up.labels("postgresql").set(0)
            self.runner.store_unreachable()
            raise
        self.metrics.dependency_up.labels("postgresql").set(1)
        self.runner.store_reachable()

    async def _redis(self) -> None:
        try:
            await self.queue.ping()
        except DependencyUnavailable:
            self.metrics.dependency_up.labels("redis").set(0)
            raise
        self.metrics.dependency_up.labels("redis").set(1)
