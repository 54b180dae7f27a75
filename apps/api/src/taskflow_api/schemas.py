"""Request and response bodies of API v1."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from starlette.responses import Response

from taskcore.callbacks import MAX_CALLBACK_URL_LENGTH
from taskcore.domain import QueueStats, Task, TaskStatus
from taskcore.flow import LIMIT_KEY_PATTERN, MAX_LIMIT_KEYS, QUEUE_PATTERN
from taskcore.service import MAX_UNIQUE_FOR_SECONDS, UNIQUE_KEY_PATTERN, TaskRequest

MAX_PRIORITY = 9
MAX_DELAY_SECONDS = 366 * 24 * 3600


def _rfc3339_only(value: object) -> object:
    """pydantic would read a number (or a numeric string, as in a query) as a Unix time; the
    contract is an RFC 3339 timestamp, so numbers are refused."""
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-01-01T12:00:00Z")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the representable range of dates") from None


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only), AfterValidator(_to_utc)]
"""An RFC 3339 timestamp with an offset, normalised to UTC."""

TaskTypeFilter = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]
"""The ``task_type`` query parameter of the task lists (API and dashboard)."""


class TaskCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"task_type": "test", "payload": {"message": "Hello"}}]},
    )

    task_type: str = Field(min_length=1, max_length=200, description="A registered task type")
    payload: dict[str, Any] = Field(description="Must match the task type's JSON Schema")
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY, description="Higher runs first among due tasks")
    max_retries: int | None = Field(default=None, ge=0, description="Retries after the first attempt")
    timeout_seconds: int | None = Field(default=None, ge=1, description="Per-attempt time limit")
    run_at: UtcDatetime | None = Field(default=None, description="Run at this time (RFC 3339 with offset)")
    delay_seconds: float | None = Field(default=None, ge=0, le=MAX_DELAY_SECONDS, description="Run after this delay")
    queue: str | None = Field(
        default=None,
        pattern=QUEUE_PATTERN,
        description="The queue; default: the task type's declared queue, else default",
    )
    limit_keys: list[Annotated[str, Field(pattern=LIMIT_KEY_PATTERN)]] = Field(
        default_factory=list,
        max_length=MAX_LIMIT_KEYS,
        description="Up to 4 keys whose limits apply (e.g. tenant:42, stripe); the first is the fair-share key",
    )
    depends_on: list[UUID] = Field(
        default_factory=list,
        max_length=1000,
        description="Tasks that must succeed first: the task is blocked until then (see docs/workflows.md)",
    )

    unique_key: str | None = Field(
        default=None,
        pattern=UNIQUE_KEY_PATTERN,
        description="While a task with this key waits or runs (or within unique_for_seconds of its creation), "
        "a submit returns that task (200, TaskFlow-Duplicate-Of) and stores nothing",
    )
    unique_for_seconds: int | None = Field(
        default=None, ge=0, le=MAX_UNIQUE_FOR_SECONDS, description="How long the key stays held after creation"
    )
    callback_url: str | None = Field(
        default=None,
        max_length=MAX_CALLBACK_URL_LENGTH,
        description="http(s) URL POSTed the task JSON, signed, when the task ends (see docs/callbacks.md)",
    )

    @field_validator("limit_keys")
    @classmethod
    def _distinct_keys(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a key")
        return value

    @field_validator("delay_seconds")
    @classmethod
    def _one_schedule(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("run_at") is not None:
            raise ValueError("give either run_at or delay_seconds, not both")
        return value

    def to_request(self) -> TaskRequest:
        """The task this body asks for: what the single, batch and dashboard submits hand the service."""
        return TaskRequest(
            task_type=self.task_type,
            payload=self.payload,
            priority=self.priority,
            max_retries=self.max_retries,
            timeout_seconds=self.timeout_seconds,
            run_at=self.run_at,
            delay_seconds=self.delay_seconds,
            queue=self.queue,
            limit_keys=self.limit_keys,
            depends_on=self.depends_on,
            unique_key=self.unique_key,
            unique_for_seconds=self.unique_for_seconds,
            callback_url=self.callback_url,
        )


class TaskLinks(BaseModel):
    self: str
    cancel: str
    retry: str


class TaskOut(BaseModel):
    id: UUID
    task_type: str
    payload: dict[str, Any]
    status: TaskStatus
    priority: int
    attempt: int = Field(description="Attempts started so far")
    max_retries: int
    timeout_seconds: int
    created_at: datetime
    run_at: datetime = Field(description="When the task is (or was) due")
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    queue: str
    limit_keys: list[str]
    workflow_id: UUID | None = None
    ref: str | None = Field(default=None, description="Its step's ref in its workflow")
    depends_on: list[UUID] = Field(default_factory=list, description="Tasks that must succeed before it runs")
    schedule_id: UUID | None = Field(default=None, description="The schedule that fired it")
    scheduled_for: datetime | None = Field(default=None, description="Its schedule slot (or the trigger's instant)")
    unique_key: str | None = None
    batch_id: UUID | None = Field(default=None, description="The batch that stored it (GET /api/v1/batches/{id})")
    completes_batch: UUID | None = Field(default=None, description="It is this batch's on_complete task")
    callback_url: str | None = Field(default=None, description="POSTed the task JSON when the task ends")
    result: Any = None
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = Field(
        default=None,
        description="The last progress its handler reported: {fraction (0..1), message, data, at, attempt}",
    )
    links: TaskLinks

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        base = f"/api/v1/tasks/{task.id}"
        return cls.model_construct(  # a stored task is valid as it is: no second validation
            id=task.id,
            task_type=task.task_type,
            payload=task.payload,
            status=task.status,
            priority=task.priority,
            attempt=task.attempt,
            max_retries=task.max_retries,
            timeout_seconds=task.timeout_seconds,
            created_at=task.created_at,
            run_at=task.run_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            cancel_requested=task.cancel_requested,
            queue=task.queue,
            limit_keys=list(task.limit_keys),
            workflow_id=task.workflow_id,
            ref=task.ref,
            depends_on=list(task.depends_on),
            schedule_id=task.schedule_id,
            scheduled_for=task.scheduled_for,
            unique_key=task.unique_key,
            batch_id=task.batch_id,
            completes_batch=task.completes_batch,
            callback_url=task.callback_url,
            result=task.result,
            error=task.error,
            progress=task.progress,
            links=TaskLinks.model_construct(self=base, cancel=f"{base}/cancel", retry=f"{base}/retry"),
        )

    def json_response(self, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
        """The task as the JSON answer FastAPI would build from ``response_model=TaskOut``, without
        validating it once more on the way out (hot routes return this)."""
        return Response(self.model_dump_json(), status_code=status_code, media_type="application/json", headers=headers)


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class TaskTypeOut(BaseModel):
    name: str
    description: str
    payload_schema: dict[str, Any]
    queue: str = Field(description="The queue its tasks go to unless a submit names one")
    paused: bool


class TaskTypeList(BaseModel):
    items: list[TaskTypeOut]


class QueueOut(BaseModel):
    depth: dict[str, int] = Field(description="Tasks waiting or running, by state")
    due: int = Field(description="Waiting tasks whose time has come (what workers should be draining)")
    oldest_due_age_seconds: float | None
    workers: int = Field(description="Workers that sent a heartbeat recently")

    @classmethod
    def of(cls, stats: QueueStats) -> QueueOut:
        return cls(
            depth={status.value: n for status, n in stats.depth.items()},
            due=stats.due,
            oldest_due_age_seconds=stats.oldest_due_age_seconds,
            workers=stats.workers,
        )


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    dependency: str | None = Field(None, description="dependency-unavailable: postgresql or redis")
    reason: str | None = Field(None, description='dependency-unavailable: why, e.g. database "x" does not exist')
