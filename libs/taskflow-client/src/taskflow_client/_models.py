"""The API's resources as pydantic models (the client does not import the server's code)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class TaskStatus(StrEnum):
    BLOCKED = "blocked"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED}


class _Model(BaseModel):
    # Fields the server adds later are kept, not refused: an older client keeps working.
    model_config = ConfigDict(extra="allow", frozen=True)


class TaskLinks(_Model):
    self: str
    cancel: str
    retry: str


class Task(_Model):
    id: UUID
    task_type: str
    payload: dict[str, Any]
    status: TaskStatus
    priority: int
    attempt: int
    max_retries: int
    timeout_seconds: int
    created_at: datetime
    run_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    queue: str = "default"
    limit_keys: list[str] = Field(default_factory=list)
    result: Any = None
    error: dict[str, Any] | None = None
    schedule_id: UUID | None = None
    scheduled_for: datetime | None = None
    unique_key: str | None = None
    progress: dict[str, Any] | None = None  # {fraction, message, data, at, attempt}: the handler's last report
    links: TaskLinks | None = None
    workflow_id: UUID | None = None
    ref: str | None = None
    depends_on: list[UUID] = Field(default_factory=list)
    batch_id: UUID | None = None  # the batch that stored it
    completes_batch: UUID | None = None  # it is this batch's on_complete task
    callback_url: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal


class DeliveryAttempt(_Model):
    attempt: int
    at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0


class Delivery(_Model):
    """One callback of a task (docs/callbacks.md): ``id`` is the TaskFlow-Delivery header."""

    id: UUID
    task_id: UUID
    event: str
    url: str
    status: str  # pending, delivered or failed
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    finished_at: datetime | None = None
    history: list[DeliveryAttempt] = Field(default_factory=list)


class DeliveryList(_Model):
    items: list[Delivery]


class TaskPage(_Model):
    items: list[Task]
    next_cursor: str | None = None


class TaskType(_Model):
    name: str
    description: str = ""
    payload_schema: dict[str, Any] = Field(default_factory=dict)
    queue: str = "default"
    paused: bool = False


class QueueStats(_Model):
    depth: dict[str, int]
    due: int
    oldest_due_age_seconds: float | None = None
    workers: int


class Queue(_Model):
    """One named queue: ``workers == 0`` while ``due > 0`` means no live worker consumes it."""

    name: str
    paused: bool
    depth: dict[str, int]
    due: int
    running: int
    oldest_due_age_seconds: float | None = None
    workers: int

    @property
    def stranded(self) -> bool:
        return self.due > 0 and self.workers == 0


class TaskTypePause(_Model):
    name: str
    paused: bool


class KeyUsage(_Model):
    key: str
    in_use: int


class Limit(_Model):
    """A limit and the slots it governs in use now; a ``template`` (key ending in ``*``) counts each key on its own."""

    key: str
    template: bool
    max_running: int | None = None
    per_second: float | None = None
    burst: int | None = None
    in_use: int
    running: int
    busiest: list[KeyUsage] = Field(default_factory=list)
    updated_at: datetime | None = None


class Load(_Model):
    """Due + running tasks of a pool's queues: what the pool must hold (its scaling signal)."""

    queues: list[str]
    due: int
    running: int
    load: int


class BulkAction(_Model):
    """A bulk retry or cancel (``Client.bulk``): with ``dry_run`` only ``matched`` is set."""

    matched: int
    dry_run: bool = False
    id: UUID | None = None
    action: str | None = None
    filter: dict[str, Any] = Field(default_factory=dict)
    status: str | None = None  # running | finished
    done: int = 0
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    actor: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status == "finished"


class WorkflowStep(_Model):
    ref: str
    task_id: UUID
    task_type: str
    status: TaskStatus
    depends_on: list[str] = Field(default_factory=list)
    attempt: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: dict[str, Any] | None = None


class Workflow(_Model):
    """A workflow: ``status`` is running, succeeded, failed or cancelled; ``steps`` is None in a list."""

    id: UUID
    name: str
    status: str
    created_at: datetime
    counts: dict[str, int]
    steps: list[WorkflowStep] | None = None

    @property
    def finished(self) -> bool:
        return self.status != "running"


class WorkflowCreated(_Model):
    id: UUID
    tasks: dict[str, UUID]


class WorkflowPage(_Model):
    items: list[Workflow]
    next_cursor: str | None = None


class BatchItem(_Model):
    id: UUID
    status: TaskStatus
    run_at: datetime
    created_at: datetime
    location: str
    duplicate_of: UUID | None = None  # its unique_key was held, or its idempotency_key used: nothing stored
    duplicate: bool = False
    idempotent_replay: bool = False


class BatchSubmitted(_Model):
    """The answer of a batch submit: its ``batch_id`` and one item per task, in request order."""

    batch_id: UUID
    count: int
    items: list[BatchItem]


class BatchCallback(_Model):
    task_id: UUID
    status: TaskStatus | None = None  # None until the batch finished and the task was stored


class Batch(_Model):
    id: UUID
    created_at: datetime
    total: int
    counts: dict[str, int]
    finished: bool
    finished_at: datetime | None = None
    on_complete: BatchCallback | None = None


class Transition(_Model):
    """One entry of a task's history (``GET /api/v1/tasks/{id}/history``): ``from_`` None for its creation."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    at: datetime
    from_: TaskStatus | None = Field(default=None, alias="from")
    to: TaskStatus
    attempt: int
    actor: str | None = None  # api:<key>, dashboard:<key>, worker:<id>, reconciler, admitter, schedule:<name>, ...
    detail: dict[str, Any] | None = None
