"""The FastAPI application factory: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import FastAPI

from taskcore.queue import TaskQueue, connect
from taskcore.registry import TaskRegistry, load_registry
from taskcore.service import TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository, open_pool
from taskcore.store.dashboard import DashboardQueries
from taskcore.store.notify import StatusListener
from taskcore.telemetry import Tracing
from taskflow_api import (
    auth,
    batch,
    bulk,
    callbacks,
    deps,
    flow,
    live,
    openapi,
    problems,
    ratelimit,
    schedules,
    ui,
    workflows,
)
from taskflow_api._edge import EdgeMiddleware
from taskflow_api.auth import Authenticator
from taskflow_api.history import router as history_router
from taskflow_api.metrics import ApiMetrics
from taskflow_api.routes import probes, router

log = structlog.get_logger("taskflow.api")

# Room for the request envelope around a payload at the limit.
ENVELOPE_BYTES = 64 * 1024
SHUTDOWN_STEP_SECONDS = 10.0


async def _within(step: str, awaitable: Awaitable[object]) -> bool:
    """Await one shutdown step for at most SHUTDOWN_STEP_SECONDS; False (and a warning) if it did not end."""
    try:
        await asyncio.wait_for(awaitable, SHUTDOWN_STEP_SECONDS)
    except TimeoutError:
        log.warning("shutdown step did not finish in time", step=step, seconds=SHUTDOWN_STEP_SECONDS)
        return False
    return True


def create_app(settings: Settings, *, registry: TaskRegistry | None = None, tracing: Tracing | None = None) -> FastAPI:
    registry = registry or load_registry(settings.task_modules, builtin=settings.builtin_tasks)
    tracing = tracing or Tracing.from_settings(settings, service="taskflow-api")
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await open_pool(settings, application_name="taskflow-api")
        queue = TaskQueue(
            connect(settings.redis_url, queue_name=settings.queue_name, timeout=settings.dependency_timeout_seconds)
        )
        service = TaskService(repo=TaskRepository(pool), queue=queue, registry=registry, settings=settings)
        # LISTEN needs a session of its own: never through a transaction-pooling PgBouncer.
        listener = StatusListener(settings.direct_database_url, connect_timeout=settings.dependency_timeout_seconds)
        await listener.start()
        deps.attach(
            app,
            deps.AppState(
                settings=settings,
                registry=registry,
                metrics=metrics,
                tracing=tracing,
                auth=Authenticator(settings),
                service=service,
                listener=listener,
                dashboard=DashboardQueries(pool),
                limiter=ratelimit.limiter_for(settings, queue.redis),
            ),
        )
        stop_refreshing = asyncio.Event()
        refresher = asyncio.create_task(
            metrics.refresh_forever(
                service,
                every=settings.metrics_refresh_seconds,
                worker_seen_within=timedelta(seconds=settings.lease_seconds * 2),
                stop=stop_refreshing,
            )
        )
        log.info("api started", env=settings.env, task_types=[t.name for t in registry])
        auth.announce(settings)
        try:
            yield
        finally:
            # Every step is bounded: a shutdown that hangs would hold up a rolling deploy (and the tests).
            stop_refreshing.set()
            if not await _within("metrics refresher", asyncio.shield(refresher)):
                refresher.cancel()
            await _within("task change listener", listener.stop())
            await _within("redis", queue.close())
            if not await _within("postgresql pool", pool.close()):
                pool.terminate()
            tracing.shutdown()

    app = FastAPI(
        title="TaskFlow",
        version="1.0.0",
        summary="Durable task queue: submit, track, list, cancel and retry tasks.",
        lifespan=lifespan,
    )
    problems.install(app)
    auth.install(app)
    ratelimit.install(app)
    cors = None
    if settings.cors_origins:  # CORS stays off unless origins are configured
        cors = {
            "allow_origins": settings.cors_origins,
            "allow_methods": ["GET", "POST"],
            "allow_headers": ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            "expose_headers": [
                "Location",
                "Retry-After",
                "Idempotent-Replayed",
                "TaskFlow-Duplicate-Of",
                "X-Request-ID",
            ],
            "max_age": 600,
        }
    # One layer: request id, security headers, CORS, body limit, metrics and the access log line.
    app.add_middleware(
        EdgeMiddleware,
        metrics=metrics,
        tracing=tracing,
        max_bytes=settings.payload_limit_bytes + ENVELOPE_BYTES,
        per_path={batch.BATCH_PATH: settings.batch_body_limit_bytes, workflows.PATH: settings.batch_body_limit_bytes},
        cors=cors,
    )
    app.include_router(batch.router)  # before the router: its path must not be read as /tasks/{task_id}
    app.include_router(router)
    app.include_router(flow.router)
    app.include_router(workflows.router)
    app.include_router(schedules.router)
    app.include_router(bulk.router)
    app.include_router(history_router)
    app.include_router(live.router)
    app.include_router(callbacks.router)
    ui.install(app)
    app.include_router(probes)
    openapi.customise(app)
    return app
