"""The worker's Prometheus metrics and its small HTTP endpoint (``TASKFLOW_WORKER_METRICS_PORT``).

Labels are bounded: ``task_type`` is a registered type name, ``outcome`` a fixed set; never a
task id. Each worker process serves its own endpoint; Prometheus sums over pods.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

log = structlog.get_logger("taskflow.worker")

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclass(frozen=True, slots=True)
class TypeMetrics:
    succeeded: Counter
    run_duration: Histogram
    queue_wait: Histogram


class WorkerMetrics:
    def __init__(self) -> None:
        self._by_type: dict[str, TypeMetrics] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        r = self.registry
        self.finished = Counter(
            "taskflow_tasks_finished_total",
            "Tasks this worker brought to a terminal state, by type and outcome (succeeded, failed, cancelled)",
            ["task_type", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "taskflow_task_retries_total", "Failed attempts scheduled to run again", ["task_type"], registry=r
        )
        self.released = Counter(
            "taskflow_tasks_released_total", "Running tasks handed back at shutdown", ["task_type"], registry=r
        )
        self.skipped = Counter(
            "taskflow_task_deliveries_skipped_total",
            "Deliveries that claimed nothing (cancelled, finished, or already running elsewhere)",
            registry=r,
        )
        self.run_duration = Histogram(
            "taskflow_task_run_duration_seconds",
            "Time a handler ran, per attempt",
            ["task_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "taskflow_task_queue_wait_seconds",
            "From the time a task was due (its submit, or its retry time) to its start",
            ["task_type"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("taskflow_worker_tasks_in_flight", "Tasks this worker is running", registry=r)
        self.concurrency = Gauge("taskflow_worker_concurrency", "Tasks this worker may run at once", registry=r)
        self.heartbeat = Gauge(
            "taskflow_worker_last_heartbeat_timestamp_seconds",
            "When this worker last renewed its leases and announced itself (Unix time)",
            registry=r,
        )
        self.dependency_up = Gauge(
            "taskflow_dependency_up", "1 when the dependency answered the last check", ["dependency"], registry=r
        )
        self.batch_size = Histogram(
            "taskflow_worker_write_batch_size",
            "Tasks per grouped PostgreSQL write (claims, successes)",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )

    def for_type(self, task_type: str) -> TypeMetrics:
        """The labelled series of one task type, looked up once (``labels()`` costs on the hot path)."""
        children = self._by_type.get(task_type)
        if children is None:
            children = self._by_type[task_type] = TypeMetrics(
                succeeded=self.finished.labels(task_type, "succeeded"),
                run_duration=self.run_duration.labels(task_type),
                queue_wait=self.queue_wait.labels(task_type),
            )
        return children

    def beat(self) -> None:
        self.heartbeat.set(time.time())

    def serve(self, host: str, port: int) -> Any:
        """Start the endpoint on a thread; None when disabled (port 0) or the port is taken."""
        if port == 0:
            return None
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.warning("worker metrics endpoint not started", host=host, port=port, error=str(exc))
            return None
        log.info("worker metrics endpoint", host=host, port=port)
        return server
