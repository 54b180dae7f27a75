"""The FastAPI application factory: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from taskcore.queue import TaskQueue, connect
from taskcore.registry import TaskRegistry, load_registry
from taskcore.service import TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository, open_pool
from taskcore.store.dashboard import DashboardQueries
from taskcore.store.notify import StatusListener
from taskflow_api import auth, live, problems, ratelimit, ui
from taskflow_api._body_limit import BodyLimitMiddleware
from taskflow_api._security_headers import SecurityHeadersMiddleware
from taskflow_api.routes import probes, router

log = structlog.get_logger("taskflow.api")

# Room for the request envelope around a payload at the limit.
ENVELOPE_BYTES = 64 * 1024


def create_app(settings: Settings, *, registry: TaskRegistry | None = None) -> FastAPI:
    registry = registry or load_registry(settings.task_modules, builtin=settings.builtin_tasks)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await open_pool(settings)
        queue = TaskQueue(
            connect(settings.redis_url, queue_name=settings.queue_name, timeout=settings.dependency_timeout_seconds)
        )
        app.state.service = TaskService(repo=TaskRepository(pool), queue=queue, registry=registry, settings=settings)
        # issue 7: one LISTEN connection per process wakes ?wait=N and /events requests
        app.state.listener = StatusListener(settings.database_url, connect_timeout=settings.dependency_timeout_seconds)
        await app.state.listener.start()
        app.state.dashboard = DashboardQueries(pool)
        log.info("api started", env=settings.env, task_types=[t.name for t in registry])
        auth.announce(settings)
        ratelimit.attach(app, settings, queue.redis)
        try:
            yield
        finally:
            await app.state.listener.stop()
            await queue.close()
            await pool.close()

    app = FastAPI(
        title="TaskFlow",
        version="1.0.0",
        summary="Durable task queue: submit, track, list, cancel and retry tasks.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.payload_limit_bytes + ENVELOPE_BYTES)
    problems.install(app)
    auth.install(app, settings)
    ratelimit.install(app, settings)
    if settings.cors_origins:  # CORS stays off unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Location", "Retry-After", "Idempotent-Replayed"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: every answer carries the headers
    app.include_router(router)
    app.include_router(live.router)
    ui.install(app)
    app.include_router(probes)
    return app
