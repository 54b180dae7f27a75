"""The worker's Prometheus metrics and its small HTTP endpoint (``TASKFLOW_WORKER_METRICS_PORT``).

Labels are bounded: ``task_type`` is a registered type name, ``outcome`` a fixed set; never a
task id. Each worker process serves its own endpoint; Prometheus sums over pods.

The endpoint also answers ``/healthz``, the worker's liveness: the HTTP server runs on a thread of
its own, so it answers from what the event loop last did, never for it. A tick the loop schedules
on itself every second proves the loop runs; when the last tick is older than ``max_age`` seconds
(query parameter, default ``LIVENESS_MAX_AGE_SECONDS``) the answer is 503 and Kubernetes, Compose
or the image's HEALTHCHECK see a hung worker. A PostgreSQL or Redis outage does not fail it:
restarting a worker cannot bring a database back (``taskflow_dependency_up`` reports those).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)

log = structlog.get_logger("taskflow.worker")

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# How often the event loop proves it runs, and how stale that proof may get before /healthz says 503.
LOOP_TICK_SECONDS = 1.0
LIVENESS_MAX_AGE_SECONDS = 15.0

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    on_close: Callable[[], None] | None = None

    def server_close(self) -> None:
        super().server_close()
        if self.on_close is not None:
            self.on_close()


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


def _server_class(host: str) -> type[_ThreadingWSGIServer]:
    """IPv6 for an IPv6 address (e.g. "::" on a dual-stack pod), as prometheus-client's own server does."""
    return _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the log; the worker logs what matters itself."""


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
        # Callbacks (docs/callbacks.md)
        self.callbacks = Counter(
            "taskflow_callback_attempts_total",
            "Callback POST attempts this worker made, by outcome (delivered, retry, failed)",
            ["outcome"],
            registry=r,
        )
        self.callback_latency = Histogram(
            "taskflow_callback_delivery_latency_seconds",
            "From a task's terminal state to its callback's 2xx answer",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.callbacks_in_flight = Gauge(
            "taskflow_callbacks_in_flight", "Callback POSTs this worker has in flight", registry=r
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
        self.last_beat = time.monotonic()

    last_beat: float | None = None
    _loop_seen: float | None = None
    _ticker: asyncio.TimerHandle | None = None

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_seen = time.monotonic()
        self._ticker = loop.call_later(LOOP_TICK_SECONDS, self._tick, loop)

    def _stop_ticking(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    def liveness(self, max_age: float = LIVENESS_MAX_AGE_SECONDS) -> tuple[bool, dict[str, Any]]:
        """Whether the event loop ticked within ``max_age`` seconds, and the ages behind the verdict.

        Without a loop tick (the endpoint was started off the loop) the heartbeat's age decides.
        """
        now = time.monotonic()
        loop_age = None if self._loop_seen is None else round(now - self._loop_seen, 3)
        beat_age = None if self.last_beat is None else round(now - self.last_beat, 3)
        age = loop_age if self._ticker is not None else beat_age
        alive = age is not None and age <= max_age
        return alive, {
            "status": "ok" if alive else "stalled",
            "loop_age_seconds": loop_age,
            "heartbeat_age_seconds": beat_age,
            "max_age_seconds": max_age,
        }

    def _app(self) -> WSGIApp:
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/healthz":
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            try:
                max_age = float(parse_qs(environ.get("QUERY_STRING", "")).get("max_age", ["nan"])[0])
            except ValueError:
                max_age = float("nan")
            if not max_age > 0:  # absent, unparsable, zero or negative: the default
                max_age = LIVENESS_MAX_AGE_SECONDS
            alive, body = self.liveness(max_age)
            start_response(
                "200 OK" if alive else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
            )
            return [json.dumps(body).encode()]

        return app

    def serve(self, host: str, port: int) -> Any:
        """Start the endpoint on a thread; None when disabled (port 0) or the port is taken.

        Called on the worker's event loop, it also starts the loop's liveness tick.
        """
        if port == 0:
            return None
        try:
            server = make_server(host, port, self._app(), server_class=_server_class(host), handler_class=_QuietHandler)
        except OSError as exc:
            log.warning("worker metrics endpoint not started", host=host, port=port, error=str(exc))
            return None
        with contextlib.suppress(RuntimeError):  # not on a loop: /healthz falls back to the heartbeat's age
            self._tick(asyncio.get_running_loop())
        server.on_close = self._stop_ticking
        threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
        log.info("worker metrics endpoint", host=host, port=port, liveness="/healthz")
        return server
