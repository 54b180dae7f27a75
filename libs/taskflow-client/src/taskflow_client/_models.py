"""The API's resources as pydantic models (the client does not import the server's code)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class TaskStatus(StrEnum):
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
    result: Any = None
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None  # {fraction, message, data, at, attempt}: the handler's last report
    links: TaskLinks | None = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal


class TaskPage(_Model):
    items: list[Task]
    next_cursor: str | None = None


class TaskType(_Model):
    name: str
    description: str = ""
    payload_schema: dict[str, Any] = Field(default_factory=dict)


class QueueStats(_Model):
    depth: dict[str, int]
    due: int
    oldest_due_age_seconds: float | None = None
    workers: int


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
