"""TaskRunner: claim, run under timeout and lease, record the outcome — once per delivery."""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

import asyncpg
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from taskcore.batching import Coalescer
from taskcore.domain import WAITING_STATES, BackoffPolicy, Task
from taskcore.errors import (
    DependencyUnavailable,
    PermanentError,
    ResultNotSerializable,
    TaskError,
    TaskNotFound,
    TaskTimeout,
    TaskValidationError,
    retried,
)
from taskcore.jsonvalue import NotStorableJSON, dumps_storable
from taskcore.progress import ProgressHub
from taskcore.queue import Enqueue, TaskQueue, defer
from taskcore.registry import TaskContext, TaskRegistry
from taskcore.settings import Settings
from taskcore.store.batches import BatchRepository
from taskcore.store.progress import ProgressStore
from taskcore.store.repository import Succeeded, Success, TaskRepository
from taskcore.store.workflows import WorkflowRepository
from taskcore.telemetry import Tracing
from taskflow_worker.metrics import WorkerMetrics

log = structlog.get_logger("taskflow.worker")

P = ParamSpec("P")
T = TypeVar("T")

TRACEBACK_LIMIT = 4000
# A job whose claim could not reach PostgreSQL goes back to the queue for this long (any worker may take it);
# meanwhile this worker picks nothing until PostgreSQL answers it again (probed at most once per interval).
CLAIM_UNREACHABLE_DEFER_SECONDS = 1.0
STORE_PROBE_INTERVAL_SECONDS = 1.0
DEADLOCK_ATTEMPTS = 8  # a success batch aborted by a deadlock is sent again (see _succeed_many)


def describe_error(exc: BaseException, attempt: int) -> dict[str, Any]:
    excerpt = "".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:]
    kind = exc.error_type() if isinstance(exc, TaskError) else type(exc).__name__
    return {"type": kind, "message": str(exc), "attempt": attempt, "traceback": excerpt}


@dataclass(slots=True)
class _Running:
    """A handler running inside its delivery's task; a cancel request cancels that task."""

    task: asyncio.Task[Any]
    cancel_seen: bool = False


class TaskRunner:
    def __init__(
        self,
        *,
        repo: TaskRepository,
        registry: TaskRegistry,
        settings: Settings,
        worker_id: str,
        metrics: WorkerMetrics | None = None,
        tracing: Tracing | None = None,
        slot_freed: asyncio.Event | None = None,
        queue: TaskQueue | None = None,
    ) -> None:
        self.repo = repo
        # Set when a run under a limit key ends: the admission loop admits the key's next task at once.
        self.slot_freed = slot_freed or asyncio.Event()
        self.queue = queue  # enqueues the children a success unblocked (else the reconciler does)
        self.workflows = WorkflowRepository(repo.pool)
        self.batches = BatchRepository(repo.pool)
        self.metrics = metrics or WorkerMetrics()
        self.tracing = tracing or Tracing(None, "taskflow-worker")
        self.registry = registry
        self.settings = settings
        self.worker_id = worker_id
        self.backoff = BackoffPolicy(settings.retry_backoff_base_seconds, settings.retry_backoff_max_seconds)
        self.running: dict[UUID, _Running] = {}
        self._store_down = False
        self._next_probe = 0.0
        size, linger = settings.worker_batch_max_size, settings.worker_batch_linger_seconds
        self._claims: Coalescer[UUID, Task | None] = Coalescer(
            self._claim_batch, max_batch=size, linger=linger, name="claim"
        )
        self._successes: Coalescer[Success, bool] = Coalescer(
            self._success_batch, max_batch=size, linger=linger, name="success"
        )
        self.progress = ProgressHub(ProgressStore(repo.pool).write)  # what handlers report (ctx.progress)

    async def _claim_batch(self, task_ids: Sequence[UUID]) -> list[Task | None]:
        self.metrics.batch_size.labels("claim").observe(len(task_ids))
        claimed = await self.repo.claim_many(
            task_ids, worker_id=self.worker_id, lease_seconds=self.settings.lease_seconds
        )
        # A duplicate delivery in the same batch: only the first caller gets the task.
        return [claimed.pop(task_id, None) for task_id in task_ids]

    async def _success_batch(self, successes: Sequence[Success]) -> list[bool]:
        self.metrics.batch_size.labels("success").observe(len(successes))
        outcome = await self._succeed_many(successes)
        recorded = outcome.recorded
        ready = [Enqueue(c.id, c.run_at, c.priority, c.queue) for c in outcome.unblocked if c.admitted]
        if ready and self.queue is not None:
            try:
                await self.queue.enqueue_many(ready)
            except DependencyUnavailable as exc:  # stored as queued: the reconciler enqueues them
                log.warning("unblocked tasks not enqueued", count=len(ready), error=str(exc))
        if len(ready) < len(outcome.unblocked):
            self.slot_freed.set()  # unblocked under a key or a pause: the admission loop takes them
        answers = []
        for success in successes:
            answers.append(success.task_id in recorded)
            recorded.discard(success.task_id)
        return answers

    async def _succeed_many(self, successes: Sequence[Success]) -> Succeeded:
        """``succeed_many``, again when PostgreSQL broke a deadlock by aborting it (its transaction
        rolled back, so a repeat records the same): two workers' batches finishing tasks of the same
        two batches lock those batches' rows (migration 0011) in opposite orders."""
        for attempt in range(DEADLOCK_ATTEMPTS):
            try:
                return await self.repo.succeed_many(successes)
            except asyncpg.DeadlockDetectedError:
                if attempt == DEADLOCK_ATTEMPTS - 1:
                    raise
                log.info("success batch aborted by a deadlock; again", size=len(successes))
                # apart, so that the batches that deadlocked together do not meet again in lockstep
                await asyncio.sleep(random.uniform(0, 0.05 * (attempt + 1)))  # noqa: S311 - jitter, not a secret
        raise AssertionError("unreachable")  # pragma: no cover

    async def _persist(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store call, retrying while PostgreSQL is unavailable (for up to outage_tolerance_seconds)."""
        try:
            return await fn(*args, **kwargs)  # the common case, without building a retry loop per call
        except DependencyUnavailable:
            pass
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DependencyUnavailable),
            wait=wait_exponential_jitter(multiplier=0.1, max=5),
            stop=stop_after_delay(self.settings.outage_tolerance_seconds),
            reraise=True,
        ):
            with attempt:
                return await fn(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    def store_unreachable(self) -> None:
        """PostgreSQL did not answer (a claim, the heartbeat): stop picking jobs until it does."""
        if not self._store_down:
            log.warning("postgresql unreachable: picking no jobs until it answers again")
        self._store_down = True
        self._next_probe = time.monotonic() + STORE_PROBE_INTERVAL_SECONDS

    def store_reachable(self) -> None:
        if self._store_down:
            log.info("postgresql reachable again: picking jobs")
        self._store_down = False

    async def ready_to_pick(self) -> bool:
        """Whether the worker should pick jobs now: yes unless PostgreSQL was found unreachable and a
        probe (at most one per STORE_PROBE_INTERVAL_SECONDS) does not show it back. A worker cut off
        from PostgreSQL but not from Redis thus leaves the queue's jobs to workers that can claim them."""
        if not self._store_down:
            return True
        if time.monotonic() < self._next_probe:
            return False
        try:
            await self.repo.ping()
        except DependencyUnavailable:
            self.store_unreachable()
            return False
        self.store_reachable()
        return True

    async def run(self, task_id: UUID) -> None:
        """The body of one arq delivery for ``task_id``."""
        try:
            task = await self._claims.add(task_id)
        except DependencyUnavailable:
            # Nothing has run yet: hand the job back (arq re-queues it, due shortly) rather than hold
            # it while PostgreSQL is away; a worker that reaches PostgreSQL takes it meanwhile.
            self.store_unreachable()
            log.info("claim could not reach postgresql; job handed back", task_id=str(task_id))
            raise defer(CLAIM_UNREACHABLE_DEFER_SECONDS) from None
        if task is None:
            self.metrics.skipped.inc()
            await self._not_claimed(task_id)
            return
        series = self.metrics.for_type(task.task_type)
        if task.started_at is not None:
            series.queue_wait.observe(max(0.0, (task.started_at - task.run_at).total_seconds()))
        # Every line logged while this task runs (ours, the handler's) carries its ids.
        with structlog.contextvars.bound_contextvars(
            task_id=str(task.id), task_type=task.task_type, attempt=task.attempt, request_id=task.request_id
        ):
            try:
                if self.tracing.enabled:
                    attributes = {"taskflow.task_id": str(task.id), "taskflow.task_type": task.task_type}
                    with self.tracing.run_span(f"run {task.task_type}", task.traceparent, attributes):
                        await self._run_claimed(task)
                else:
                    await self._run_claimed(task)
            finally:
                if task.limit_keys:  # however the run ended (success, failure, retry, cancel, release)
                    self.slot_freed.set()
                if task.batch_counted and task.batch_id is not None:  # its batch has an on_complete
                    await self._enqueue_batch_callback(task.batch_id)

    async def _run_claimed(self, task: Task) -> None:
        log.debug("task started")
        started = time.perf_counter()
        current = asyncio.current_task()
        assert current is not None
        running = _Running(current)
        try:
            result_json = await self._execute(task, running)
        except asyncio.CancelledError:
            await self._cancelled(task, running)
            return
        except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
            self.metrics.for_type(task.task_type).run_duration.observe(time.perf_counter() - started)
            await self._failed(task, exc)
            return
        elapsed = time.perf_counter() - started
        series = self.metrics.for_type(task.task_type)
        series.run_duration.observe(elapsed)
        if await self._persist(self._successes.add, Success(task.id, task.attempt, result_json)):
            series.succeeded.inc()
            log.info("task succeeded", duration_ms=round(elapsed * 1000, 3))
        else:
            log.warning("result discarded: the task changed while it ran (lease lost or cancelled)")

    async def _enqueue_batch_callback(self, batch_id: UUID) -> None:
        """A task of a batch ended: if that ended the batch, PostgreSQL stored its on_complete task in
        the same transaction (migration 0011); enqueue it now rather than wait for the reconciler.
        Only tasks of a batch with an on_complete pay this query; a repeat enqueue is a no-op."""
        if self.queue is None:
            return
        try:
            due = await self.batches.callbacks_due([batch_id])
            if due:
                await self.queue.enqueue_many([Enqueue(t.id, t.run_at, t.priority, t.queue) for t in due])
        except DependencyUnavailable as exc:  # stored as queued: the reconciler enqueues it
            log.warning("batch callback not enqueued", batch_id=str(batch_id), error=str(exc))

    async def _not_claimed(self, task_id: UUID) -> None:
        """Cancelled, finished or already running elsewhere: skip. Waiting but early: come back when due.
        Waiting but not admitted (paused, or waiting for its limit): skip too; the admitter enqueues it
        again when it may start, so a deferred job would only hold a place in the queue."""
        try:
            task = await self.repo.get(task_id)
        except TaskNotFound:
            return
        wait = (task.run_at - datetime.now(UTC)).total_seconds()
        if task.status in WAITING_STATES and task.admitted and wait > 0:
            raise defer(wait)
        log.debug("delivery skipped", task_id=str(task_id), status=task.status)

    async def _execute(self, task: Task, running: _Running) -> str:
        """Run the handler under the task's timeout, in this task; its result encoded as JSON."""
        try:
            spec = self.registry.get(task.task_type)
            payload = spec.parse(task.payload)
        except TaskValidationError as exc:
            raise PermanentError(str(exc)) from exc
        ctx = TaskContext(task.id, task.task_type, task.attempt, task.max_retries, progress_hub=self.progress)
        if task.depends_on:  # only a task with parents pays this query
            ctx = replace(ctx, parents=await self._persist(self.workflows.parent_results, task.depends_on))
        if task.completes_batch is not None:  # a batch's on_complete task: the batch's counts
            ctx = replace(ctx, batch=await self._persist(self.batches.context, task.completes_batch))
        # Registered only while the handler runs (no await between here and the handler), so a
        # cancel request seen by the heartbeat always lands in the handler, never in our writes.
        self.running[task.id] = running
        self.metrics.in_flight.inc()
        try:
            # The handler runs in this delivery's own task (no second task per delivery):
            # cancelling it (cancel request, shutdown, arq abort) cancels the handler.
            async with asyncio.timeout(task.timeout_seconds):
                result = await spec.run(payload, ctx)
        except TimeoutError as exc:
            raise TaskTimeout(f"the task ran longer than its timeout of {task.timeout_seconds}s") from exc
        finally:
            del self.running[task.id]
            self.metrics.in_flight.dec()
            if task.id in self.progress:  # only a task that reported: its last value before the outcome
                await self.progress.settle(task.id)
        try:
            return dumps_storable(result).decode()
        except NotStorableJSON as exc:
            raise ResultNotSerializable(f"the handler's result is not JSON-serialisable: {exc}") from exc

    async def _failed(self, task: Task, exc: Exception) -> None:
        error = describe_error(exc, task.attempt)
        if task.retries_left and retried(exc):
            delay = self.backoff.delay(task.attempt)
            due = await self._persist(self.repo.mark_retry, task.id, task.attempt, error, delay)
            if due is not None:
                self.metrics.retries.labels(task.task_type).inc()
                log.warning("task failed, will retry", error=error["message"], retry_in=round(delay, 3))
                if due.admitted:
                    raise defer(delay)  # arq re-queues this same job (id = task id)
                return  # under a limit or paused: the job ends here; the admitter enqueues the retry when due
        elif await self._persist(self.repo.mark_failed, task.id, task.attempt, error):
            self.metrics.finished.labels(task.task_type, "failed").inc()
            log.error("task failed", error=error["message"])
            return
        log.warning("outcome discarded: the task changed while it ran", error=error["message"])

    async def _cancelled(self, task: Task, running: _Running) -> None:
        """The handler was cancelled: by a cancel request (record it) or by shutdown (give the task back)."""
        if running.cancel_seen:
            running.task.uncancel()  # ours: the delivery goes on to end normally
        if await self._persist(self.repo.mark_cancelled, task.id, task.attempt):
            self.metrics.finished.labels(task.task_type, "cancelled").inc()
            log.info("task cancelled while running")
        elif await self._persist(self.repo.release, task.id, task.attempt):
            self.metrics.released.labels(task.task_type).inc()
            log.info("task released for another worker (shutdown)")
        if running.task.cancelling():  # cancelled by someone else too (shutdown, arq abort): stop
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
                running.task.cancel()
