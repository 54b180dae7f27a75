"""The API's Prometheus metrics, in a registry of the app's own (``AppState.metrics``).

Queue depth, the oldest due task's age, workers seen, per-queue due / running / live workers /
pause, and dependency health come from
PostgreSQL and Redis; a background loop refreshes them every ``metrics_refresh_seconds``
so that a scrape never queries PostgreSQL. Labels are bounded: task types are registered
names, routes are templates (``/api/v1/tasks/{task_id}``), never raw paths or ids.

With ``taskflow-api --workers N`` each process counts on its own and a scrape reaches one of
them: run one process per pod and scale with replicas (prometheus-client's multiprocess mode
is not used).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import timedelta

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from taskcore.domain import QueueStats
from taskcore.errors import DependencyUnavailable
from taskcore.service import TaskService
from taskcore.store.callbacks import DeliveryRepository
from taskcore.store.flow import QueueInfo

log = structlog.get_logger("taskflow.api")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEPENDENCIES = ("postgresql", "redis")


class _QueueCollector(Collector):
    """Serves the last snapshot the refresh loop took."""

    def __init__(self) -> None:
        self.stats: QueueStats | None = None
        self.queues: list[QueueInfo] | None = None
        self.up: dict[str, float] = {}
        self.callbacks: tuple[int, float | None] | None = None  # pending deliveries, age of the oldest

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "taskflow_dependency_up", "1 when the dependency answered the last check", labels=["dependency"]
        )
        for name in DEPENDENCIES:
            if name in self.up:
                up.add_metric([name], self.up[name])
        yield up
        yield from self._per_queue()  # declared (empty) before the first snapshot, so rules can name them
        if self.stats is None:
            return
        depth = GaugeMetricFamily("taskflow_queue_depth", "Tasks waiting or running, by state", labels=["state"])
        for state, n in self.stats.depth.items():
            depth.add_metric([state.value], n)
        yield depth
        yield GaugeMetricFamily(
            "taskflow_queue_oldest_due_age_seconds",
            "How long the oldest due task has waited (0 when none is due)",
            value=self.stats.oldest_due_age_seconds or 0.0,
        )
        yield GaugeMetricFamily("taskflow_workers_seen", "Workers with a recent heartbeat", value=self.stats.workers)
        if self.callbacks is not None:
            pending, oldest = self.callbacks
            yield GaugeMetricFamily(
                "taskflow_callbacks_pending", "Callback deliveries not yet delivered or given up", value=pending
            )
            yield GaugeMetricFamily(
                "taskflow_callbacks_oldest_pending_age_seconds",
                "Since the task of the oldest pending callback ended (0 when none is pending)",
                value=oldest or 0.0,
            )

    def _per_queue(self) -> Iterable[Metric]:
        """One series per queue; ``sum(taskflow_queue_due)`` is what the unlabelled gauge used to be."""
        families = {
            "due": GaugeMetricFamily("taskflow_queue_due", "Waiting tasks whose time has come", labels=["queue"]),
            "running": GaugeMetricFamily("taskflow_queue_running", "Tasks running now", labels=["queue"]),
            "workers": GaugeMetricFamily(
                "taskflow_queue_workers",
                "Live workers consuming the queue (0 with due > 0: stranded)",
                labels=["queue"],
            ),
            "paused": GaugeMetricFamily("taskflow_queue_paused", "1 while the queue is paused", labels=["queue"]),
        }
        for info in self.queues or ():
            families["due"].add_metric([info.name], info.due)
            families["running"].add_metric([info.name], info.running)
            families["workers"].add_metric([info.name], info.workers)
            families["paused"].add_metric([info.name], 1 if info.paused else 0)
        yield from families.values()


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.submitted = Counter(
            "taskflow_tasks_submitted_total", "Tasks accepted by the API", ["task_type"], registry=self.registry
        )
        self.requests = Counter(
            "taskflow_http_requests_total",
            "HTTP requests answered, by route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "taskflow_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue = _QueueCollector()
        self.registry.register(self.queue)
        self._submitted: dict[str, Counter] = {}

    def submitted_of(self, task_type: str) -> Counter:
        """The submitted counter of one task type, looked up once (labels() takes a lock)."""
        child = self._submitted.get(task_type)
        if child is None:
            child = self._submitted[task_type] = self.submitted.labels(task_type)
        return child

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def refresh(self, service: TaskService, *, worker_seen_within: timedelta, limit: float) -> None:
        """One snapshot of queue depth and dependency health, each check bounded by ``limit`` seconds."""
        try:
            async with asyncio.timeout(limit):
                self.queue.stats = await service.repo.queue_stats(worker_seen_within=worker_seen_within)
                self.queue.queues = await service.flow.queues()
                self.queue.callbacks = await DeliveryRepository(service.repo.pool).pending_stats()
            self.queue.up["postgresql"] = 1
        except (DependencyUnavailable, TimeoutError):
            self.queue.up["postgresql"] = 0
        try:
            async with asyncio.timeout(limit):
                await service.queue.ping()
            self.queue.up["redis"] = 1
        except (DependencyUnavailable, TimeoutError):
            self.queue.up["redis"] = 0

    async def refresh_forever(
        self, service: TaskService, *, every: float, worker_seen_within: timedelta, stop: asyncio.Event
    ) -> None:
        """Refresh until ``stop`` is set (an event rather than a cancel: each step is bounded anyway)."""
        limit = service.settings.dependency_timeout_seconds
        while not stop.is_set():
            try:
                await self.refresh(service, worker_seen_within=worker_seen_within, limit=limit)
            except Exception as exc:  # noqa: BLE001 - metrics must never take the API down
                log.warning("metrics refresh failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
