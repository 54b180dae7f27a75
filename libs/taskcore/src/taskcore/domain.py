"""Task states, the task record and the retry policy."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


class TaskStatus(StrEnum):
    BLOCKED = "blocked"  # waiting for its parents (depends_on) to succeed
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})
WAITING_STATES = frozenset({TaskStatus.SCHEDULED, TaskStatus.QUEUED})
RETRYABLE_STATES = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})

# Every transition the system performs. The store builds each statement's guard from this table
# (taskcore.store.states), and tests/reliability/test_state_machine.py checks PostgreSQL against it.
# A new status is one entry here (plus the sets above it belongs to).
TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    # Unblocked when its last parent succeeds (scheduled when its run_at is still ahead), or
    # cancelled: by a user, or because a parent failed for good (error type UpstreamFailed).
    TaskStatus.BLOCKED: frozenset({TaskStatus.QUEUED, TaskStatus.SCHEDULED, TaskStatus.CANCELLED}),
    TaskStatus.SCHEDULED: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED}),
    TaskStatus.QUEUED: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED}),
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.SUCCEEDED,
            TaskStatus.SCHEDULED,  # failed attempt with retries left, or lease lost
            TaskStatus.QUEUED,  # released by a worker shutting down
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        }
    ),
    TaskStatus.SUCCEEDED: frozenset(),
    # A manual retry; blocked again when a parent has not succeeded (re-armed with its upstream).
    TaskStatus.FAILED: frozenset({TaskStatus.QUEUED, TaskStatus.BLOCKED}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.QUEUED, TaskStatus.BLOCKED}),
}


@dataclass(frozen=True, slots=True)
class Task:
    """A task as stored in PostgreSQL."""

    id: UUID
    task_type: str
    payload: dict[str, Any]
    status: TaskStatus
    priority: int
    attempt: int
    max_retries: int
    timeout_seconds: int
    created_at: datetime
    updated_at: datetime
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    result: Any
    error: dict[str, Any] | None
    idempotency_key: str | None = None
    request_id: str | None = None
    traceparent: str | None = None
    queue: str = "default"
    limit_keys: tuple[str, ...] = ()
    admitted: bool = True  # False: waiting for a slot, a token or the end of a pause (flow control)
    workflow_id: UUID | None = None
    ref: str | None = None  # its step's ref in the workflow
    depends_on: tuple[UUID, ...] = ()  # the parents that must succeed before it runs
    schedule_id: UUID | None = None  # the schedule that fired it (taskcore.schedules)
    scheduled_for: datetime | None = None  # its slot (or the instant of a manual trigger)
    unique_key: str | None = None
    progress: dict[str, Any] | None = None  # the last progress its handler reported (not read on claim)
    batch_id: UUID | None = None  # the batch that stored it (taskcore.batches)
    batch_counted: bool = False  # its batch has an on_complete: its end is counted on the batch row
    completes_batch: UUID | None = None  # it is this batch's on_complete task (ctx.batch)
    callback_url: str | None = None  # POSTed the task JSON when it ends (taskcore.callbacks)

    @property
    def retries_left(self) -> bool:
        return self.attempt <= self.max_retries


@dataclass(frozen=True, slots=True)
class NewTask:
    """What a submit stores; ``request_hash`` fingerprints the request for Idempotency-Key."""

    id: UUID
    task_type: str
    payload: dict[str, Any]
    priority: int
    max_retries: int
    timeout_seconds: int
    run_at: datetime | None  # None: due now
    idempotency_key: str | None = None
    request_hash: str | None = None
    request_id: str | None = None  # the API request that submitted it (X-Request-ID)
    traceparent: str | None = None  # W3C trace context of the submit span
    payload_json: str | None = None  # ``payload`` already encoded, so that it is serialised once
    queue: str = "default"
    limit_keys: tuple[str, ...] = ()
    unique_key: str | None = None  # at most one waiting or running task per key (docs/schedules.md)
    unique_for_seconds: int | None = None  # ... and none within this long after the holder was created
    batch_id: UUID | None = None  # the batch it is stored with (taskcore.batches)
    batch_counted: bool = False  # ... which has an on_complete (migration 0011)
    actor: str | None = None  # who submitted it, for its history ('api:<key>', 'schedule:<name>', ...)
    callback_url: str | None = None  # POSTed the task JSON when it ends (taskcore.callbacks)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff with "equal jitter": half fixed, half random."""

    base_seconds: float
    max_seconds: float

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exp = min(self.max_seconds, self.base_seconds * 2.0 ** max(0, attempt - 1))
        jitter = (rng or random).uniform(0, exp / 2)
        return exp / 2 + jitter


@dataclass(frozen=True, slots=True)
class QueueStats:
    """All queues together (``/api/v1/queue``)."""

    depth: dict[TaskStatus, int]
    due: int
    oldest_due_age_seconds: float | None
    workers: int
