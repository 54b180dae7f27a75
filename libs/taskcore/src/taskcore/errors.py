"""The exception tree shared by the API and the worker.

TaskflowError
├── TaskNotFound            — no task with that id
├── LimitNotFound           — no limit set on that key
├── WorkflowNotFound        — no workflow with that id
├── ScheduleNotFound        — no schedule with that id
├── BatchNotFound           — no batch with that id
├── ScheduleNameTaken       — another schedule has that name
├── InvalidTransition       — the task's state does not allow the operation
├── IdempotencyConflict     — same Idempotency-Key, different request
├── TaskValidationError     — unknown task type or payload not matching its schema
│   └── PayloadTooLarge     — serialised payload over the configured limit
├── DependencyUnavailable   — PostgreSQL or Redis does not answer, or refuses TaskFlow's settings
└── TaskError               — why an attempt of a task ended badly: its name is the task's ``error.type``
    ├── TaskTimeout         — the handler ran past ``timeout_seconds`` (retried)
    ├── PermanentError      — the task's type or payload is no longer valid (not retried)
    ├── ResultNotSerializable — the handler returned something that is not JSON (retried)
    ├── HandlerExit         — the handler raised SystemExit or KeyboardInterrupt (retried)
    ├── LeaseExpired        — the worker running it stopped renewing its lease (retried)
    └── UpstreamFailed      — a task it depends on failed for good or was cancelled (it never ran)

Any other exception a handler raises is recorded under its own class name and retried.
docs/api.md lists these for users.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar
from uuid import UUID

import structlog

log = structlog.get_logger("taskflow.dependencies")


class TaskflowError(Exception):
    """Base class of every error TaskFlow raises on purpose."""


class TaskNotFound(TaskflowError):
    def __init__(self, task_id: UUID) -> None:
        super().__init__(f"task {task_id} does not exist")
        self.task_id = task_id


class LimitNotFound(TaskflowError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no limit is set on key {key!r}")
        self.key = key


class WorkflowNotFound(TaskflowError):
    def __init__(self, workflow_id: UUID) -> None:
        super().__init__(f"workflow {workflow_id} does not exist")
        self.workflow_id = workflow_id


class ScheduleNotFound(TaskflowError):
    def __init__(self, schedule_id: UUID) -> None:
        super().__init__(f"schedule {schedule_id} does not exist")
        self.schedule_id = schedule_id


class BatchNotFound(TaskflowError):
    def __init__(self, batch_id: UUID) -> None:
        super().__init__(f"batch {batch_id} does not exist")
        self.batch_id = batch_id


class ScheduleNameTaken(TaskflowError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a schedule named {name!r} exists already")
        self.name = name


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


class BatchIdempotencyConflict(IdempotencyConflict):
    """A batch request's Idempotency-Key was used for another batch request (``task_id``: that batch)."""

    def __init__(self, key: str, batch_id: UUID) -> None:
        TaskflowError.__init__(
            self, f"Idempotency-Key {key!r} was already used for batch {batch_id} with a different request"
        )
        self.key = key
        self.task_id = batch_id


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
    """``reason`` says why, in the driver's words where they help (``database "x" does not exist``);
    ``hint`` says what an operator can do when the cause is a setting rather than an outage."""

    def __init__(self, dependency: str, reason: str = "", *, hint: str = "") -> None:
        super().__init__(f"{dependency} is unavailable" + (f": {_join(reason, hint)}" if reason else ""))
        self.dependency = dependency
        self.reason = reason
        self.hint = hint

    @property
    def why(self) -> str:
        """The reason and the hint, for a log line or a problem detail."""
        return _join(self.reason, self.hint) or "no answer"


def _join(reason: str, hint: str) -> str:
    return f"{reason} ({hint})" if hint else reason


def outage_reason(exc: BaseException) -> str:
    """A short, stable reason for a network failure (stable so that a repeated failure is not a new cause)."""
    underlying = exc.__cause__ or exc.__context__  # a driver's wrapper around the socket's error
    if not isinstance(exc, OSError) and isinstance(underlying, OSError):
        exc = underlying
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


# (reason, hint) for a driver error: each dependency's module knows its driver's errors.
Describe = Callable[[BaseException], tuple[str, str]]


def _as_outage(exc: BaseException) -> tuple[str, str]:
    return outage_reason(exc), ""


class _CauseLog:
    """Logs a dependency's failure once per change of cause, and its recovery, rather than once per
    request: a wrong setting would otherwise log the same line for every call until it is fixed."""

    def __init__(self) -> None:
        self.down: dict[str, str] = {}

    def failed(self, exc: DependencyUnavailable) -> None:
        if self.down.get(exc.dependency) == exc.why:
            return
        self.down[exc.dependency] = exc.why
        # A hint means a setting is wrong: it will not heal by itself.
        report = log.error if exc.hint else log.warning
        report(f"{exc.dependency} unavailable", dependency=exc.dependency, reason=exc.reason, hint=exc.hint or None)

    def answered(self, dependency: str) -> None:
        if self.down.pop(dependency, None) is not None:
            log.info(f"{dependency} answers again", dependency=dependency)


causes = _CauseLog()


class TaskError(TaskflowError):
    """An attempt's outcome that TaskFlow names itself; ``retried`` says whether attempts left are used."""

    retried: ClassVar[bool] = True

    @classmethod
    def error_type(cls) -> str:
        return cls.__name__


def retried(exc: BaseException) -> bool:
    """Whether an attempt that ended with ``exc`` is retried while attempts are left."""
    return not isinstance(exc, TaskError) or exc.retried


class TaskTimeout(TaskError):
    """The handler ran past the task's ``timeout_seconds``."""


class PermanentError(TaskError):
    """The task cannot succeed however often it runs (its type or payload is no longer valid)."""

    retried = False


class ResultNotSerializable(TaskError, TypeError):
    """The handler returned something that is not JSON."""


class HandlerExit(TaskError):
    """The handler raised SystemExit or KeyboardInterrupt: that ends its task, never the worker."""


class LeaseExpired(TaskError):
    """The worker running the task stopped renewing its lease (it died or lost PostgreSQL); the
    reconciler records it, so no traceback exists."""

    MESSAGE = "the worker running this task stopped renewing its lease (it died or lost PostgreSQL)"

    @classmethod
    def as_error(cls) -> dict[str, Any]:
        return {"type": cls.error_type(), "message": cls.MESSAGE}


class UpstreamFailed(TaskError):
    """A task this one depends on failed for good or was cancelled, so this one was cancelled
    without running (the store records it; ``error.upstream_task_id`` names that task). Retrying
    the upstream task re-arms it."""

    retried = False


@asynccontextmanager
async def unavailable_on(
    dependency: str, errors: tuple[type[BaseException], ...], describe: Describe = _as_outage
) -> AsyncIterator[None]:
    """Raise DependencyUnavailable(dependency) for any of ``errors`` raised in the block, with the
    reason and hint ``describe`` gives; the cause is logged when it changes."""
    try:
        yield
    except errors as exc:
        reason, hint = describe(exc)
        unavailable = DependencyUnavailable(dependency, reason, hint=hint)
        causes.failed(unavailable)
        raise unavailable from exc
    if causes.down:  # a dict check on the hot path; the bookkeeping only while something is down
        causes.answered(dependency)
