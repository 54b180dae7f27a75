"""The worker process: the arq Worker (built by the arq adapter, taskcore.queue) running every task
through ``TaskRunner``, with the resources it opens at startup and closes at shutdown."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import structlog

from taskcore.bulk import BulkRunner
from taskcore.callbacks import webhook_secret
from taskcore.errors import DependencyUnavailable
from taskcore.flowservice import FlowService, admission_loop
from taskcore.queue import TaskflowWorker, TaskQueue, WorkerSpec, build_worker, redis_settings
from taskcore.registry import TaskRegistry, load_registry
from taskcore.scheduler import ScheduleService
from taskcore.service import TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository, open_leader_pool, open_pool
from taskcore.store.bulk import BulkRepository
from taskcore.store.callbacks import DeliveryRepository
from taskcore.store.flow import FlowRepository
from taskcore.store.schedules import ScheduleRepository
from taskcore.telemetry import Tracing
from taskflow_worker.callbacks import CallbackSender
from taskflow_worker.heartbeat import Heartbeat
from taskflow_worker.metrics import WorkerMetrics
from taskflow_worker.reconciler import Reconciler
from taskflow_worker.runner import TaskRunner

log = structlog.get_logger("taskflow.worker")


async def _every(seconds: float, name: str, step: Callable[[], Awaitable[object]]) -> None:
    """Run ``step`` every ``seconds`` until cancelled; a failing step is logged (once per change of
    cause, and when it works again: an outage is one line, not one a second), never fatal."""
    failing: str | None = None
    while True:
        try:
            await step()
        except Exception as exc:  # noqa: BLE001 - a loop that dies silently is worse
            error = f"{type(exc).__name__}: {exc}"
            if error != failing:
                log.warning("background step failed", loop=name, error=error)
            failing = error
        else:
            if failing is not None:
                log.info("background step works again", loop=name)
            failing = None
        await asyncio.sleep(seconds)


async def _restarting(name: str, run: Callable[[], Awaitable[None]], *, pause: float = 1.0) -> None:
    """Run a loop that should never end; restarted (after ``pause``) if it fails, until cancelled."""
    while True:
        try:
            await run()
        except Exception as exc:  # noqa: BLE001 - a loop that dies silently is worse
            log.warning("background loop failed; restarting", loop=name, error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(pause)


class WorkerResources:
    """What the worker opens once it runs (pool, runner, heartbeat, reconciler, metrics endpoint) and
    closes when it stops; its methods are what the arq Worker is built with."""

    def __init__(
        self, settings: Settings, *, registry: TaskRegistry, worker_id: str, metrics: WorkerMetrics, tracing: Tracing
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.worker_id = worker_id
        self.metrics = metrics
        self.tracing = tracing
        self.runner: TaskRunner | None = None
        self._pool: asyncpg.Pool | None = None
        self._leader_pool: asyncpg.Pool | None = None
        self._repo: TaskRepository | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._metrics_server: Any = None

    async def run_task(self, ctx: dict[str, Any], task_id: str) -> None:
        """The arq job: it carries only the task id."""
        assert self.runner is not None  # set in start(), which arq runs before any job
        await self.runner.run(UUID(task_id))

    async def ready_to_pick(self) -> bool:
        return self.runner is None or await self.runner.ready_to_pick()

    async def start(self, queue: TaskQueue) -> None:
        settings = self.settings
        self._pool = await open_pool(settings, application_name="taskflow-worker")
        self._leader_pool = await open_leader_pool(settings, self._pool)
        self._repo = repo = TaskRepository(self._pool, leader_pool=self._leader_pool)
        queues = tuple(name for name, _ in settings.worker_queues)
        flow = FlowService(flow=FlowRepository(self._pool), queue=queue, registry=self.registry, settings=settings)
        try:
            await flow.flow.note_queues(queues)  # a queue exists once a worker names it
        except DependencyUnavailable as exc:
            # The worker starts without PostgreSQL, as before; its heartbeat still records what it consumes.
            log.warning("could not record the queues consumed", queues=queues, error=str(exc))
        slot_freed = asyncio.Event()
        self.runner = runner = TaskRunner(
            repo=repo,
            registry=self.registry,
            settings=settings,
            worker_id=self.worker_id,
            metrics=self.metrics,
            tracing=self.tracing,
            slot_freed=slot_freed,
            queue=queue,
        )
        heartbeat = Heartbeat(
            runner=runner,
            repo=repo,
            queue=queue,
            metrics=self.metrics,
            worker_id=self.worker_id,
            concurrency=settings.worker_concurrency,
            queues=queues,
        )
        reconciler = Reconciler(repo=repo, queue=queue, settings=settings)
        self._metrics_server = self.metrics.serve(settings.worker_metrics_host, settings.worker_metrics_port)
        self._loops = [
            asyncio.create_task(_every(settings.lease_renew_interval, "heartbeat", heartbeat.beat)),
            asyncio.create_task(_every(settings.reconcile_interval_seconds, "reconcile", reconciler.tick)),
            asyncio.create_task(
                _restarting(
                    "admission",
                    lambda: admission_loop(flow, slot_freed, interval=settings.admission_interval_seconds),
                )
            ),
            asyncio.create_task(
                _every(settings.reconcile_interval_seconds, "bulk", self._bulk_runner(queue, flow).step)
            ),
        ]
        if settings.webhook_concurrency > 0 and webhook_secret(settings) is not None:
            sender = CallbackSender(
                store=DeliveryRepository(self._pool), settings=settings, owner=self.worker_id, metrics=self.metrics
            )
            self._loops.append(asyncio.create_task(_restarting("callbacks", sender.run)))
        if settings.schedule_interval_seconds > 0:
            # Its own loop and leader lock, not the reconciler's pass: a slot must fire within about
            # a second, while a reconciler pass runs every few seconds and can take long.
            schedules = ScheduleService(
                service=TaskService(repo=repo, queue=queue, registry=self.registry, settings=settings),
                repo=ScheduleRepository(self._pool),
            )
            self._loops.append(
                asyncio.create_task(_every(settings.schedule_interval_seconds, "schedules", schedules.fire))
            )
        log.info(
            "worker started",
            worker_id=self.worker_id,
            task_types=[t.name for t in self.registry],
            concurrency=settings.worker_concurrency,
            queues=dict(settings.worker_queues),
        )

    def _bulk_runner(self, queue: TaskQueue, flow: FlowService) -> BulkRunner:
        """Bulk actions (taskcore/bulk.py): any worker may hold one's lease and work through it."""
        assert self._pool is not None
        return BulkRunner(
            store=BulkRepository(self._pool), queue=queue, flow=flow, settings=self.settings, owner=self.worker_id
        )

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._repo is not None and self._pool is not None:
            try:
                await self._repo.worker_gone(self.worker_id)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not deregister worker", error=str(exc))
            await self._pool.close()
        if self._leader_pool is not None and self._leader_pool is not self._pool:
            await self._leader_pool.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        self.tracing.shutdown()
        log.info("worker stopped", worker_id=self.worker_id)


def worker_spec(settings: Settings) -> WorkerSpec:
    return WorkerSpec(
        queue=settings.queue_name,
        concurrency=settings.worker_concurrency,
        poll_delay_seconds=settings.worker_poll_delay_seconds,
        max_timeout_seconds=settings.max_timeout_seconds,
        shutdown_grace_seconds=settings.worker_shutdown_grace_seconds,
        health_check_interval_seconds=max(5, int(settings.lease_seconds)),
        queues=settings.worker_queues,
        redis=redis_settings(
            settings.redis_url,
            timeout_seconds=settings.dependency_timeout_seconds,
            outage_tolerance_seconds=settings.outage_tolerance_seconds,
        ),
    )


def create_worker(
    settings: Settings,
    *,
    registry: TaskRegistry | None = None,
    burst: bool = False,
    metrics: WorkerMetrics | None = None,
    tracing: Tracing | None = None,
) -> TaskflowWorker:
    """Build the arq Worker; its resources open when it starts and close when it stops."""
    metrics = metrics or WorkerMetrics()
    metrics.concurrency.set(settings.worker_concurrency)
    resources = WorkerResources(
        settings,
        registry=registry or load_registry(settings.task_modules, builtin=settings.builtin_tasks),
        worker_id=settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid4().hex[:6]}",
        metrics=metrics,
        tracing=tracing or Tracing.from_settings(settings, service="taskflow-worker"),
    )
    return build_worker(
        resources.run_task,
        worker_spec(settings),
        ready_to_pick=resources.ready_to_pick,
        on_startup=resources.start,
        on_shutdown=resources.stop,
        burst=burst,
    )
