"""The arq Worker: one function (``run_task``), lease heartbeats and the reconciler loop."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import structlog
from arq.connections import RedisSettings
from arq.worker import Worker, func
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskcore.errors import DependencyUnavailable
from taskcore.queue import RUN_TASK, TaskQueue
from taskcore.registry import TaskRegistry, load_registry
from taskcore.settings import Settings
from taskcore.store import TaskRepository, open_pool
from taskcore.telemetry import Tracing
from taskflow_worker._arq_worker import TaskflowWorker
from taskflow_worker.metrics import WorkerMetrics
from taskflow_worker.reconciler import Reconciler
from taskflow_worker.runner import TaskRunner

log = structlog.get_logger("taskflow.worker")

# PostgreSQL governs retries; arq must never give up on a job by its own count.
ARQ_MAX_TRIES = 1_000_000


async def run_task(ctx: dict[str, Any], task_id: str) -> None:
    """The arq job: it carries only the task id."""
    runner: TaskRunner = ctx["runner"]
    await runner.run(UUID(task_id))


async def _every(seconds: float, name: str, step: Callable[[], Awaitable[object]]) -> None:
    """Run ``step`` every ``seconds`` until cancelled; a failing step is logged, never fatal."""
    while True:
        try:
            await step()
        except Exception as exc:  # noqa: BLE001 - a loop that dies silently is worse
            log.warning("background step failed", loop=name, error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(seconds)


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's Redis connection, retrying each command with backoff so that the worker waits out
    a Redis restart (for about ``outage_tolerance_seconds``) instead of exiting."""
    tolerance = settings.outage_tolerance_seconds
    return dataclasses.replace(
        RedisSettings.from_dsn(settings.redis_url),
        conn_timeout=max(1, math.ceil(settings.dependency_timeout_seconds)),
        conn_retries=max(1, math.ceil(tolerance)),
        retry_on_timeout=True,
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
        # Delays double from 0.1 s up to 2 s: about four retries for the first 3 s, then one per 2 s.
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=4 + math.ceil(max(0.0, tolerance - 3) / 2)),
    )


def create_worker(
    settings: Settings,
    *,
    registry: TaskRegistry | None = None,
    burst: bool = False,
    metrics: WorkerMetrics | None = None,
    tracing: Tracing | None = None,
) -> Worker:
    """Build the arq Worker; resources open in on_startup and close in on_shutdown."""
    registry = registry or load_registry(settings.task_modules, builtin=settings.builtin_tasks)
    worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid4().hex[:6]}"
    metrics = metrics or WorkerMetrics()
    tracing = tracing or Tracing.from_settings(settings, service="taskflow-worker")
    metrics.concurrency.set(settings.worker_concurrency)

    async def startup(ctx: dict[str, Any]) -> None:
        pool = await open_pool(settings)
        repo = TaskRepository(pool)
        runner = TaskRunner(
            repo=repo, registry=registry, settings=settings, worker_id=worker_id, metrics=metrics, tracing=tracing
        )
        reconciler = Reconciler(repo=repo, queue=TaskQueue(ctx["redis"]), settings=settings)

        async def heartbeat() -> None:
            try:
                await runner.renew_leases()
                await repo.worker_seen(
                    worker_id=worker_id,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    concurrency=settings.worker_concurrency,
                )
            except DependencyUnavailable:
                metrics.dependency_up.labels("postgresql").set(0)
                runner.store_unreachable()
                raise
            metrics.dependency_up.labels("postgresql").set(1)
            runner.store_reachable()
            metrics.beat()
            try:
                await ctx["redis"].ping()
            except (RedisConnectionError, RedisTimeoutError, OSError):
                metrics.dependency_up.labels("redis").set(0)
                raise
            metrics.dependency_up.labels("redis").set(1)

        ctx.update(
            metrics_server=metrics.serve(settings.worker_metrics_host, settings.worker_metrics_port),
            pool=pool,
            repo=repo,
            runner=runner,
            reconciler=reconciler,
            loops=[
                asyncio.create_task(_every(settings.lease_renew_interval, "heartbeat", heartbeat)),
                asyncio.create_task(_every(settings.reconcile_interval_seconds, "reconcile", reconciler.tick)),
            ],
        )
        log.info(
            "worker started",
            worker_id=worker_id,
            task_types=[t.name for t in registry],
            concurrency=settings.worker_concurrency,
            queue=settings.queue_name,
        )

    async def shutdown(ctx: dict[str, Any]) -> None:
        for loop in ctx.get("loops", []):
            loop.cancel()
        await asyncio.gather(*ctx.get("loops", []), return_exceptions=True)
        if "repo" in ctx:
            try:
                await ctx["repo"].worker_gone(worker_id)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not deregister worker", error=str(exc))
            await ctx["pool"].close()
        if ctx.get("metrics_server") is not None:
            ctx["metrics_server"].shutdown()
            ctx["metrics_server"].server_close()
        tracing.shutdown()
        log.info("worker stopped", worker_id=worker_id)

    return TaskflowWorker(
        functions=[
            func(
                run_task,
                name=RUN_TASK,
                timeout=settings.max_timeout_seconds + 60,
                max_tries=ARQ_MAX_TRIES,
                keep_result=0,
            )
        ],
        redis_settings=redis_settings(settings),
        queue_name=settings.queue_name,
        max_jobs=settings.worker_concurrency,
        poll_delay=settings.worker_poll_delay_seconds,
        keep_result=0,
        allow_abort_jobs=True,
        job_completion_wait=settings.worker_shutdown_grace_seconds,
        handle_signals=not burst,
        burst=burst,
        on_startup=startup,
        on_shutdown=shutdown,
        health_check_interval=max(5, int(settings.lease_seconds)),
        log_results=False,
    )
