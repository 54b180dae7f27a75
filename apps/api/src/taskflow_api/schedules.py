"""API v1 for schedules: periodic tasks fired by the schedule leader (docs/schedules.md).

Reads need ``tasks:read``; every write needs ``admin``: a schedule outlives the request that made
it and submits tasks on its own, outside the per-key submit rate limit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskcore.callbacks import MAX_CALLBACK_URL_LENGTH
from taskcore.errors import TaskValidationError
from taskcore.flow import LIMIT_KEY_PATTERN, MAX_LIMIT_KEYS, QUEUE_PATTERN
from taskcore.scheduler import ScheduleInput
from taskcore.schedules import CATCH_UP_CAP, SCHEDULE_NAME_PATTERN, CatchUp, Overlap, Schedule
from taskcore.service import TaskRequest
from taskflow_api._strict_json import StrictJSONRoute
from taskflow_api.auth import Scope
from taskflow_api.deps import SchedulesDep, require_scope
from taskflow_api.problems import problem_responses
from taskflow_api.schemas import MAX_PRIORITY, TaskOut

router = APIRouter(prefix="/api/v1", route_class=StrictJSONRoute, tags=["schedules"])

EXAMPLE: dict[str, Any] = {
    "name": "nightly-report",
    "cron": "30 2 * * *",
    "timezone": "Europe/Paris",
    "task": {"task_type": "test", "payload": {"message": "report"}},
}


class ScheduleTask(BaseModel):
    """The task each run is: the options of a submit, less its timing."""

    model_config = ConfigDict(extra="forbid")

    task_type: str = Field(min_length=1, max_length=200, description="A registered task type")
    payload: dict[str, Any] = Field(description="Must match the task type's JSON Schema")
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)
    max_retries: int | None = Field(default=None, ge=0)
    timeout_seconds: int | None = Field(default=None, ge=1)
    limit_keys: list[Annotated[str, Field(pattern=LIMIT_KEY_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_LIMIT_KEYS
    )
    callback_url: str | None = Field(
        default=None,
        max_length=MAX_CALLBACK_URL_LENGTH,
        description="Every run is POSTed its task JSON here when it ends (see docs/callbacks.md)",
    )

    @field_validator("limit_keys")
    @classmethod
    def _distinct_keys(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a key")
        return value

    def to_request(self) -> TaskRequest:
        return TaskRequest(
            task_type=self.task_type,
            payload=self.payload,
            priority=self.priority,
            max_retries=self.max_retries,
            timeout_seconds=self.timeout_seconds,
            queue=self.queue,
            limit_keys=self.limit_keys,
            callback_url=self.callback_url,
        )


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [dict(EXAMPLE)]})

    name: str = Field(pattern=SCHEDULE_NAME_PATTERN, description="Unique")
    cron: str | None = Field(
        default=None, min_length=1, max_length=200, description="Five-field cron expression, in `timezone`"
    )
    every_seconds: int | None = Field(default=None, ge=1, description="Or: a fixed interval (counted from the epoch)")
    timezone: str = Field(default="UTC", min_length=1, max_length=100, description="IANA time zone of `cron`")
    task: ScheduleTask
    overlap: Overlap = Field(default=Overlap.SKIP, description="skip: no new run while the last is not terminal")
    catch_up: CatchUp = Field(
        default=CatchUp.LATEST,
        description=f"After downtime: none, latest (one run), or all (at most {CATCH_UP_CAP}, the newest)",
    )
    paused: bool = False


class ScheduleUpdate(BaseModel):
    """A partial update: only the fields given change. `cron` replaces `every_seconds` and the reverse."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"cron": "0 * * * *"}]})

    name: str | None = Field(default=None, pattern=SCHEDULE_NAME_PATTERN)
    cron: str | None = Field(default=None, min_length=1, max_length=200)
    every_seconds: int | None = Field(default=None, ge=1)
    timezone: str | None = Field(default=None, min_length=1, max_length=100)
    task: ScheduleTask | None = None
    overlap: Overlap | None = None
    catch_up: CatchUp | None = None
    paused: bool | None = None

    def changes(self) -> dict[str, Any]:
        given = {name: getattr(self, name) for name in self.model_fields_set}
        nulls = [name for name, value in given.items() if value is None and name not in {"cron", "every_seconds"}]
        if nulls:
            raise TaskValidationError(
                "fields cannot be null: " + ", ".join(sorted(nulls)),
                [{"field": n, "message": "must not be null", "type": "null"} for n in sorted(nulls)],
            )
        if "task" in given:
            given["task"] = given["task"].to_request()
        return given


class LastRunOut(BaseModel):
    task_id: UUID
    scheduled_for: datetime
    status: str


class ScheduleOut(BaseModel):
    id: UUID
    name: str
    cron: str | None
    every_seconds: int | None
    timezone: str
    task: dict[str, Any] = Field(description="The task each run is, defaults resolved")
    overlap: Overlap
    catch_up: CatchUp
    paused: bool
    next_runs: list[datetime] = Field(description="The next 3 slots (empty while paused)")
    last_slot_at: datetime | None = Field(description="The latest slot that fired")
    last_runs: list[LastRunOut] = Field(description="The latest runs, newest first")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        return cls(
            id=s.id,
            name=s.name,
            cron=s.timing.cron,
            every_seconds=s.timing.every_seconds,
            timezone=s.timing.timezone,
            task=s.task.as_json(),
            overlap=s.overlap,
            catch_up=s.catch_up,
            paused=s.paused,
            next_runs=s.next_runs(),
            last_slot_at=s.last_slot_at,
            last_runs=[
                LastRunOut(task_id=r.task_id, scheduled_for=r.scheduled_for, status=r.status) for r in s.last_runs
            ],
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


class ScheduleList(BaseModel):
    items: list[ScheduleOut]


@router.post(
    "/schedules",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    responses=problem_responses(400, 409, 413, 422, 503),
    summary="Create a schedule",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def create_schedule(body: ScheduleCreate, schedules: SchedulesDep, response: Response) -> ScheduleOut:
    schedule = await schedules.create(
        ScheduleInput(
            name=body.name,
            task=body.task.to_request(),
            cron=body.cron,
            every_seconds=body.every_seconds,
            timezone=body.timezone,
            overlap=body.overlap,
            catch_up=body.catch_up,
            paused=body.paused,
        )
    )
    response.headers["Location"] = f"/api/v1/schedules/{schedule.id}"
    return ScheduleOut.of(schedule)


@router.get(
    "/schedules",
    response_model=ScheduleList,
    responses=problem_responses(503),
    summary="Every schedule, by name, with its next and latest runs",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def list_schedules(schedules: SchedulesDep) -> ScheduleList:
    return ScheduleList(items=[ScheduleOut.of(s) for s in await schedules.repo.list()])


@router.get(
    "/schedules/{schedule_id}",
    response_model=ScheduleOut,
    responses=problem_responses(404, 422, 503),
    summary="Get a schedule",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def get_schedule(schedule_id: UUID, schedules: SchedulesDep) -> ScheduleOut:
    return ScheduleOut.of(await schedules.repo.get(schedule_id))


@router.patch(
    "/schedules/{schedule_id}",
    response_model=ScheduleOut,
    responses=problem_responses(400, 404, 409, 422, 503),
    summary="Change a schedule (only the fields given)",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def update_schedule(schedule_id: UUID, body: ScheduleUpdate, schedules: SchedulesDep) -> ScheduleOut:
    return ScheduleOut.of(await schedules.update(schedule_id, body.changes()))


@router.delete(
    "/schedules/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 422, 503),
    summary="Delete a schedule (its past runs keep their schedule_id)",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def delete_schedule(schedule_id: UUID, schedules: SchedulesDep) -> Response:
    await schedules.delete(schedule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/schedules/{schedule_id}/pause",
    response_model=ScheduleOut,
    responses=problem_responses(404, 422, 503),
    summary="Pause a schedule: no slot fires until resumed",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def pause_schedule(schedule_id: UUID, schedules: SchedulesDep) -> ScheduleOut:
    return ScheduleOut.of(await schedules.pause(schedule_id))


@router.post(
    "/schedules/{schedule_id}/resume",
    response_model=ScheduleOut,
    responses=problem_responses(404, 422, 503),
    summary="Resume a schedule from now (slots missed while paused do not run)",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def resume_schedule(schedule_id: UUID, schedules: SchedulesDep) -> ScheduleOut:
    return ScheduleOut.of(await schedules.resume(schedule_id))


@router.post(
    "/schedules/{schedule_id}/trigger",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskOut,
    responses=problem_responses(404, 422, 503),
    summary="Run the schedule's task now (not a slot: the slots are unchanged)",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def trigger_schedule(schedule_id: UUID, schedules: SchedulesDep) -> Response:
    task = await schedules.trigger(schedule_id)
    return TaskOut.of(task).json_response(status.HTTP_202_ACCEPTED, {"Location": f"/api/v1/tasks/{task.id}"})
