"""TaskRunner: claim, run under timeout and lease, record the outcome — once per delivery."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

import structlog
from arq.worker import Retry
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from taskcore.domain import WAITING_STATES, BackoffPolicy, Task
from taskcore.errors import DependencyUnavailable, TaskNotFound, TaskValidationError
from taskcore.jsonvalue import NotStorableJSON, dumps_storable
from taskcore.registry import TaskContext, TaskRegistry
from taskcore.settings import Settings
from taskcore.store.repository import TaskRepository

log = structlog.get_logger("taskflow.worker")

P = ParamSpec("P")
T = TypeVar("T")

TRACEBACK_LIMIT = 4000


class TaskTimeout(Exception):
    """The handler ran past the task's ``timeout_seconds``."""


class ResultNotSerializable(TypeError):
    """The handler returned something that is not JSON."""


class PermanentError(Exception):
    """The task cannot succeed however often it runs (its type or payload is no longer valid)."""


def describe_error(exc: BaseException, attempt: int) -> dict[str, Any]:
    excerpt = "".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:]
    return {"type": type(exc).__name__, "message": str(exc), "attempt": attempt, "traceback": excerpt}


@dataclass(slots=True)
class _Running:
    handler: asyncio.Future[Any]
    cancel_seen: bool = False


class TaskRunner:
    def __init__(self, *, repo: TaskRepository, registry: TaskRegistry, settings: Settings, worker_id: str) -> None:
        self.repo = repo
        self.registry = registry
        self.settings = settings
        self.worker_id = worker_id
        self.backoff = BackoffPolicy(settings.retry_backoff_base_seconds, settings.retry_backoff_max_seconds)
        self.running: dict[UUID, _Running] = {}

    async def _persist(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store call, retrying while PostgreSQL is unavailable (for up to outage_tolerance_seconds)."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DependencyUnavailable),
            wait=wait_exponential_jitter(multiplier=0.1, max=5),
            stop=stop_after_delay(self.settings.outage_tolerance_seconds),
            reraise=True,
        ):
            with attempt:
                return await fn(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(self, task_id: UUID) -> None:
        """The body of one arq delivery for ``task_id``."""
        task = await self._persist(
            self.repo.claim, task_id, worker_id=self.worker_id, lease_seconds=self.settings.lease_seconds
        )
        if task is None:
            await self._not_claimed(task_id)
            return
        bound = log.bind(task_id=str(task.id), task_type=task.task_type, attempt=task.attempt)
        bound.info("task started")
        try:
            result = await self._execute(task)
        except asyncio.CancelledError:
            await self._cancelled(task, bound)
            return
        except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
            await self._failed(task, exc, bound)
            return
        if await self._persist(self.repo.mark_succeeded, task.id, task.attempt, result):
            bound.info("task succeeded")
        else:
            bound.warning("result discarded: the task changed while it ran (lease lost or cancelled)")

    async def _not_claimed(self, task_id: UUID) -> None:
        """Cancelled, finished or already running elsewhere: skip. Waiting but early: come back when due."""
        try:
            task = await self.repo.get(task_id)
        except TaskNotFound:
            return
        wait = (task.run_at - datetime.now(UTC)).total_seconds()
        if task.status in WAITING_STATES and wait > 0:
            raise Retry(defer=wait)
        log.debug("delivery skipped", task_id=str(task_id), status=task.status)

    async def _execute(self, task: Task) -> Any:
        try:
            spec = self.registry.get(task.task_type)
            payload = spec.parse(task.payload)
        except TaskValidationError as exc:
            raise PermanentError(str(exc)) from exc
        ctx = TaskContext(task.id, task.task_type, task.attempt, task.max_retries)
        handler = asyncio.ensure_future(spec.run(payload, ctx))
        self.running[task.id] = _Running(handler)
        try:
            result = await asyncio.wait_for(handler, task.timeout_seconds)
        except TimeoutError as exc:
            raise TaskTimeout(f"the task ran longer than its timeout of {task.timeout_seconds}s") from exc
        finally:
            del self.running[task.id]
        try:
            dumps_storable(result)
        except NotStorableJSON as exc:
            raise ResultNotSerializable(f"the handler's result is not JSON-serialisable: {exc}") from exc
        return result

    async def _failed(self, task: Task, exc: Exception, bound: structlog.typing.FilteringBoundLogger) -> None:
        error = describe_error(exc, task.attempt)
        if task.retries_left and not isinstance(exc, PermanentError):
            delay = self.backoff.delay(task.attempt)
            if await self._persist(self.repo.mark_retry, task.id, task.attempt, error, delay):
                bound.warning("task failed, will retry", error=error["message"], retry_in=round(delay, 3))
                raise Retry(defer=delay)  # arq re-queues this same job (id = task id)
        elif await self._persist(self.repo.mark_failed, task.id, task.attempt, error):
            bound.error("task failed", error=error["message"])
            return
        bound.warning("outcome discarded: the task changed while it ran", error=error["message"])

    async def _cancelled(self, task: Task, bound: structlog.typing.FilteringBoundLogger) -> None:
        """The handler was cancelled: by a cancel request (record it) or by shutdown (give the task back)."""
        if await self._persist(self.repo.mark_cancelled, task.id, task.attempt):
            bound.info("task cancelled while running")
        elif await self._persist(self.repo.release, task.id, task.attempt):
            bound.info("task released for another worker (shutdown)")
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError

    async def renew_leases(self) -> None:
        """Heartbeat: extend the leases of running tasks and stop those whose cancel was requested."""
        if not self.running:
            return
        cancelled = await self.repo.renew_leases(
            list(self.running), worker_id=self.worker_id, lease_seconds=self.settings.lease_seconds
        )
        for task_id in cancelled:
            running = self.running.get(task_id)
            if running is not None and not running.cancel_seen:
                running.cancel_seen = True
                running.handler.cancel()
