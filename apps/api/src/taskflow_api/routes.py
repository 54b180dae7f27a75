"""API v1 routes: thin — parse, call the service or repository, shape the response."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from taskcore.domain import TaskStatus
from taskcore.errors import DependencyUnavailable
from taskcore.flow import DEFAULT_QUEUE, QUEUE_PATTERN
from taskcore.store.repository import ListFilter
from taskflow_api._strict_json import StrictJSONRoute
from taskflow_api.auth import Scope
from taskflow_api.deps import (
    MetricsDep,
    RepoDep,
    ServiceDep,
    StateDep,
    require_scope,
    submit_rate_limit,
)
from taskflow_api.filters import ErrorTypeQuery, LimitKeyQuery, PayloadQuery, parse_payload_filter
from taskflow_api.live import MAX_WAIT_SECONDS, wait_for_terminal
from taskflow_api.observability import actor_of, origin_of
from taskflow_api.problems import RETRY_AFTER_SECONDS, problem, problem_responses
from taskflow_api.schemas import (
    Health,
    QueueOut,
    TaskCreate,
    TaskOut,
    TaskPage,
    TaskTypeFilter,
    TaskTypeList,
    TaskTypeOut,
    UtcDatetime,
)

TEXT = {"type": "string"}

router = APIRouter(prefix="/api/v1", route_class=StrictJSONRoute)
probes = APIRouter()


@router.post(
    "/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskOut,
    responses={
        200: {"model": TaskOut, "description": "Its unique_key is held: the holding task (TaskFlow-Duplicate-Of)"},
        **problem_responses(400, 409, 413, 422, 503),
    },
    summary="Submit a task",
    dependencies=[require_scope(Scope.TASKS_WRITE), submit_rate_limit()],
)
async def submit_task(
    body: TaskCreate,
    state: StateDep,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="A repeat with the same key returns the original task",
        ),
    ] = None,
) -> Response:
    done = await state.service.submit_one(
        body.to_request(), origin=origin_of(request, state.tracing), idempotency_key=idempotency_key
    )
    task = done.task
    headers = {"Location": f"/api/v1/tasks/{task.id}"}
    if done.duplicate:  # its unique_key is held: that task, nothing stored
        headers["TaskFlow-Duplicate-Of"] = str(task.id)
        return TaskOut.of(task).json_response(status.HTTP_200_OK, headers)
    if done.created:
        state.metrics.submitted_of(task.task_type).inc()
    else:
        headers["Idempotent-Replayed"] = "true"
    return TaskOut.of(task).json_response(status.HTTP_202_ACCEPTED, headers)


@router.get(
    "/tasks/{task_id}",
    response_model=TaskOut,
    responses=problem_responses(404, 422, 503),
    summary="Get a task",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def get_task(
    task_id: UUID,
    state: StateDep,
    wait: Annotated[
        float | None,
        Query(gt=0, le=MAX_WAIT_SECONDS, description="Answer once the task is terminal, or after this many seconds"),
    ] = None,
) -> Response:
    if wait is None:
        return TaskOut.of(await state.repo.get(task_id)).json_response()
    return TaskOut.of(await wait_for_terminal(state.listener, state.repo, task_id, wait)).json_response()


@router.get(
    "/tasks",
    response_model=TaskPage,
    responses=problem_responses(422, 503),
    summary="List tasks, newest first",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def list_tasks(
    repo: RepoDep,
    status_: Annotated[list[TaskStatus], Query(alias="status", description="Repeatable")] = [],  # noqa: B006
    task_type: TaskTypeFilter = None,
    created_after: UtcDatetime | None = None,
    created_before: UtcDatetime | None = None,
    queue: Annotated[str | None, Query(pattern=QUEUE_PATTERN)] = None,
    workflow_id: UUID | None = None,
    schedule_id: Annotated[UUID | None, Query(description="Runs of this schedule")] = None,
    batch_id: Annotated[UUID | None, Query(description="The tasks of this batch")] = None,
    limit_key: LimitKeyQuery = None,
    error_type: ErrorTypeQuery = None,
    payload: PayloadQuery = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> TaskPage:
    page = await repo.list_page(
        ListFilter(
            statuses=status_,
            task_type=task_type,
            created_after=created_after,
            created_before=created_before,
            queue=queue,
            workflow_id=workflow_id,
            schedule_id=schedule_id,
            batch_id=batch_id,
            limit_key=limit_key,
            error_type=error_type,
            payload=parse_payload_filter(payload),
        ),
        limit=limit,
        cursor=cursor,
    )
    return TaskPage(items=[TaskOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.post(
    "/tasks/{task_id}/cancel",
    response_model=TaskOut,
    responses={
        202: {"model": TaskOut, "description": "Running: cancel requested, the worker stops it"},
        **problem_responses(404, 409, 422, 503),
    },
    summary="Cancel a task",
    dependencies=[require_scope(Scope.TASKS_WRITE)],
)
async def cancel_task(task_id: UUID, service: ServiceDep, response: Response, request: Request) -> TaskOut:
    task = await service.cancel(task_id, actor=actor_of(request))
    if task.status is TaskStatus.RUNNING:
        response.status_code = status.HTTP_202_ACCEPTED
    return TaskOut.of(task)


@router.post(
    "/tasks/{task_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskOut,
    responses=problem_responses(404, 409, 422, 503),
    summary="Run a failed or cancelled task again",
    dependencies=[require_scope(Scope.TASKS_WRITE)],
)
async def retry_task(task_id: UUID, service: ServiceDep, request: Request) -> TaskOut:
    return TaskOut.of(await service.retry(task_id, actor=actor_of(request)))


@router.get(
    "/task-types",
    response_model=TaskTypeList,
    summary="Registered task types and their payload schemas",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def task_types(state: StateDep) -> TaskTypeList:
    paused = {name for kind, name in await state.flow.flow.paused() if kind == "task_type"}
    return TaskTypeList(
        items=[
            TaskTypeOut(
                name=t.name,
                description=t.description,
                payload_schema=t.json_schema(),
                queue=t.queue or DEFAULT_QUEUE,
                paused=t.name in paused,
            )
            for t in state.registry
        ]
    )


@router.get(
    "/queue",
    response_model=QueueOut,
    responses=problem_responses(503),
    summary="Queue depth and workers",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def queue_stats(state: StateDep) -> QueueOut:
    settings = state.settings
    stats = await state.repo.queue_stats(worker_seen_within=timedelta(seconds=settings.lease_seconds * 2))
    return QueueOut.of(stats)


@probes.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    return Health(status="ok")


@probes.get(
    "/ready", response_model=Health, responses=problem_responses(503), summary="Readiness: PostgreSQL and Redis answer"
)
async def ready(service: ServiceDep) -> Response:
    timeout = service.settings.dependency_timeout_seconds
    checks = dict(
        zip(
            ("postgresql", "redis"),
            await asyncio.gather(_check(service.repo.ping(), timeout), _check(service.queue.ping(), timeout)),
            strict=True,
        )
    )
    down = [name for name, state in checks.items() if state != "ok"]
    if not down:
        return JSONResponse({"status": "ready", "checks": checks})
    return problem(
        503,
        "not-ready",
        "Not ready",
        "; ".join(f"{name}: {checks[name].removeprefix('unavailable: ')}" for name in down),
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        instance="/ready",
        extra={"checks": checks},
    )


async def _check(probe: Awaitable[None], limit: float) -> str:
    try:
        await asyncio.wait_for(probe, limit)
    except DependencyUnavailable as exc:
        return f"unavailable: {exc.why}"
    except TimeoutError:
        return f"unavailable: no answer within {limit:g} s"
    return "ok"


@probes.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": TEXT}}}},
)
async def metrics(api_metrics: MetricsDep) -> Response:
    return Response(api_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
