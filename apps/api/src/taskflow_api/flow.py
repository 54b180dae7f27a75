"""API v1 for flow control: queues and their pauses, task-type pauses, limits, and the scaling load."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskcore.flow import LIMIT_NAME_PATTERN, QUEUE_PATTERN
from taskcore.flowservice import Load
from taskcore.store.flow import LimitUsage, QueueInfo
from taskflow_api._strict_json import StrictJSONRoute
from taskflow_api.auth import Scope
from taskflow_api.deps import FlowServiceDep, RegistryDep, require_scope
from taskflow_api.problems import problem, problem_responses

router = APIRouter(prefix="/api/v1", route_class=StrictJSONRoute, tags=["flow control"])

QueueName = Annotated[str, Path(pattern=QUEUE_PATTERN, description="A queue name")]
LimitKey = Annotated[str, Path(pattern=LIMIT_NAME_PATTERN, description="A key, or a prefix template ending in *")]


class QueueInfoOut(BaseModel):
    name: str
    paused: bool
    depth: dict[str, int] = Field(description="Tasks waiting or running, by state")
    due: int = Field(description="Waiting tasks whose time has come")
    running: int
    oldest_due_age_seconds: float | None
    workers: int = Field(description="Live workers consuming this queue; 0 with due tasks means they are stranded")

    @classmethod
    def of(cls, info: QueueInfo) -> QueueInfoOut:
        return cls(
            name=info.name,
            paused=info.paused,
            depth={s.value: n for s, n in info.depth.items()},
            due=info.due,
            running=info.running,
            oldest_due_age_seconds=info.oldest_due_age_seconds,
            workers=info.workers,
        )


class TaskTypePause(BaseModel):
    name: str
    paused: bool


# The bounds keep a limit storable (integer columns) and its GCRA interval a representable time.
MAX_COUNT = 2**31 - 1
MIN_PER_SECOND = 1 / 86400  # one a day
MAX_PER_SECOND = 1_000_000


class LimitIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # "3" is not a count: a typed client never sends one, a typo should not pass
        json_schema_extra={"examples": [{"max_running": 3}, {"per_second": 5, "burst": 10}]},
    )

    max_running: int | None = Field(default=None, gt=0, le=MAX_COUNT, description="Tasks under the key running at once")
    per_second: float | None = Field(
        default=None,
        gt=0,
        le=MAX_PER_SECOND,
        description=f"Tasks under the key started per second (at least {MIN_PER_SECOND:.3g}, one a day)",
    )
    burst: int | None = Field(
        default=None, gt=0, le=MAX_COUNT, description="Starts allowed at once above the rate (needs per_second)"
    )

    @field_validator("per_second")
    @classmethod
    def _not_too_slow(cls, value: float | None) -> float | None:
        if value is not None and 0 < value < MIN_PER_SECOND:
            raise ValueError(f"must be at least {MIN_PER_SECOND:.3g} (one a day)")
        return value


class KeyUsage(BaseModel):
    key: str
    in_use: int


class LimitOut(BaseModel):
    key: str
    template: bool = Field(description="The key ends in *: the limit applies to each key with that prefix on its own")
    max_running: int | None
    per_second: float | None
    burst: int | None
    in_use: int = Field(description="Slots held now: admitted tasks under the key(s), queued for a worker or running")
    running: int = Field(description="Tasks under the key(s) running now")
    busiest: list[KeyUsage] = Field(description="For a template, the keys holding the most slots")
    updated_at: datetime | None

    @classmethod
    def of(cls, usage: LimitUsage) -> LimitOut:
        limit = usage.limit
        return cls(
            key=limit.key,
            template=limit.template,
            max_running=limit.max_running,
            per_second=limit.per_second,
            burst=limit.burst,
            in_use=usage.in_use,
            running=usage.running,
            busiest=[KeyUsage(key=k, in_use=n) for k, n in usage.busiest],
            updated_at=limit.updated_at,
        )


class LoadOut(BaseModel):
    queues: list[str]
    due: int
    running: int
    load: int = Field(description="due + running: what a pool consuming these queues must hold (scale on this)")

    @classmethod
    def of(cls, load: Load) -> LoadOut:
        return cls(queues=list(load.queues), due=load.due, running=load.running, load=load.load)


def _queue_not_found(name: str) -> Response:
    return problem(404, "queue-not-found", "Queue not found", f"no task or worker names queue {name!r}")


@router.get(
    "/queues",
    response_model=list[QueueInfoOut],
    responses=problem_responses(503),
    summary="Every queue: depth, due, running, pause, live workers",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def list_queues(flow: FlowServiceDep) -> list[QueueInfoOut]:
    return [QueueInfoOut.of(q) for q in await flow.queues()]


@router.get(
    "/queues/{name}",
    response_model=QueueInfoOut,
    responses=problem_responses(404, 422, 503),
    summary="One queue",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def get_queue(name: QueueName, flow: FlowServiceDep) -> QueueInfoOut | Response:
    info = await flow.queue_info(name)
    return _queue_not_found(name) if info is None else QueueInfoOut.of(info)


@router.post(
    "/queues/{name}/pause",
    response_model=QueueInfoOut,
    responses=problem_responses(422, 503),
    summary="Pause a queue: it accepts submits, no worker starts its tasks until resumed",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def pause_queue(name: QueueName, flow: FlowServiceDep) -> QueueInfoOut | Response:
    await flow.pause("queue", name)
    info = await flow.queue_info(name)
    return _queue_not_found(name) if info is None else QueueInfoOut.of(info)


@router.post(
    "/queues/{name}/resume",
    response_model=QueueInfoOut,
    responses=problem_responses(404, 422, 503),
    summary="Resume a paused queue",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def resume_queue(name: QueueName, flow: FlowServiceDep) -> QueueInfoOut | Response:
    await flow.resume("queue", name)
    info = await flow.queue_info(name)
    return _queue_not_found(name) if info is None else QueueInfoOut.of(info)


def _type_not_found(name: str) -> Response:
    return problem(404, "task-type-not-found", "Task type not found", f"no task type is registered as {name!r}")


@router.post(
    "/task-types/{name}/pause",
    response_model=TaskTypePause,
    responses=problem_responses(404, 503),
    summary="Pause a task type: its tasks are accepted and wait until resumed",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def pause_task_type(name: str, flow: FlowServiceDep, registry: RegistryDep) -> TaskTypePause | Response:
    if name not in registry:
        return _type_not_found(name)
    await flow.pause("task_type", name)
    return TaskTypePause(name=name, paused=True)


@router.post(
    "/task-types/{name}/resume",
    response_model=TaskTypePause,
    responses=problem_responses(404, 503),
    summary="Resume a paused task type",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def resume_task_type(name: str, flow: FlowServiceDep, registry: RegistryDep) -> TaskTypePause | Response:
    if name not in registry:
        return _type_not_found(name)
    await flow.resume("task_type", name)
    return TaskTypePause(name=name, paused=False)


@router.get(
    "/limits",
    response_model=list[LimitOut],
    responses=problem_responses(503),
    summary="Every limit with the slots in use now",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def list_limits(flow: FlowServiceDep) -> list[LimitOut]:
    return [LimitOut.of(u) for u in await flow.limits()]


@router.get(
    "/limits/{key}",
    response_model=LimitOut,
    responses=problem_responses(404, 422, 503),
    summary="One limit",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def get_limit(key: LimitKey, flow: FlowServiceDep) -> LimitOut:
    return LimitOut.of(await flow.limit(key))


@router.put(
    "/limits/{key}",
    response_model=LimitOut,
    responses={201: {"model": LimitOut, "description": "Created"}, **problem_responses(400, 422, 503)},
    summary="Set the limit on a key (max_running and/or per_second with burst); takes effect at once",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def put_limit(key: LimitKey, body: LimitIn, flow: FlowServiceDep, response: Response) -> LimitOut:
    usage, created = await flow.set_limit(
        key, max_running=body.max_running, per_second=body.per_second, burst=body.burst
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return LimitOut.of(usage)


@router.delete(
    "/limits/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 422, 503),
    summary="Remove the limit on a key",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def delete_limit(key: LimitKey, flow: FlowServiceDep) -> Response:
    await flow.delete_limit(key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/load",
    response_model=LoadOut,
    responses=problem_responses(422, 503),
    summary="Due + running tasks in the given queues: the scaling signal of a worker pool",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def load(
    flow: FlowServiceDep,
    queue: Annotated[list[str], Query(min_length=1, description="Repeatable: the pool's queues")],
) -> LoadOut:
    return LoadOut.of(await flow.load(queue))
