"""The exception tree shared by the API and the worker.

TaskflowError
├── TaskNotFound            — no task with that id
├── InvalidTransition       — the task's state does not allow the operation
├── IdempotencyConflict     — same Idempotency-Key, different request
├── TaskValidationError     — unknown task type or payload not matching its schema
│   └── PayloadTooLarge     — serialised payload over the configured limit
└── DependencyUnavailable   — PostgreSQL or Redis does not answer
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID


class TaskflowError(Exception):
    """Base class of every error TaskFlow raises on purpose."""


class TaskNotFound(TaskflowError):
    def __init__(self, task_id: UUID) -> None:
        super().__init__(f"task {task_id} does not exist")
        self.task_id = task_id


class InvalidTransition(TaskflowError):
    def __init__(self, task_id: UUID, status: str, action: str) -> None:
        super().__init__(f"cannot {action} task {task_id}: it is {status}")
        self.task_id = task_id
        self.status = status
        self.action = action


class IdempotencyConflict(TaskflowError):
    def __init__(self, key: str, task_id: UUID) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for task {task_id} with a different request")
        self.key = key
        self.task_id = task_id


class TaskValidationError(TaskflowError):
    """``errors`` holds one entry per bad field: ``{"field": ..., "message": ..., "type": ...}``."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


class PayloadTooLarge(TaskValidationError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"payload is {size} bytes, the limit is {limit} bytes",
            [{"field": "payload", "message": f"must be at most {limit} bytes", "type": "too_large"}],
        )
        self.size = size
        self.limit = limit


class DependencyUnavailable(TaskflowError):
    def __init__(self, dependency: str, reason: str = "") -> None:
        super().__init__(f"{dependency} is unavailable" + (f": {reason}" if reason else ""))
        self.dependency = dependency


@asynccontextmanager
async def unavailable_on(dependency: str, errors: tuple[type[BaseException], ...]) -> AsyncIterator[None]:
    """Raise DependencyUnavailable(dependency) for any of ``errors`` raised in the block."""
    try:
        yield
    except errors as exc:
        raise DependencyUnavailable(dependency, type(exc).__name__) from exc
