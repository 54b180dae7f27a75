"""Submit, cancel and retry: the operations that touch both PostgreSQL and the arq queue.

PostgreSQL is written first and is the truth; the queue write after it is best effort,
because the reconciler enqueues any waiting task that has no arq job.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
import structlog

from taskcore.batching import Coalescer
from taskcore.callbacks import check_callback_url
from taskcore.domain import NewTask, Task, TaskStatus
from taskcore.errors import DependencyUnavailable, PayloadTooLarge, TaskValidationError
from taskcore.flow import DEFAULT_QUEUE, check_limit_keys, check_queue_name
from taskcore.flowservice import FlowService
from taskcore.jsonvalue import NotStorableJSON, dumps_storable
from taskcore.queue import Enqueue, TaskQueue
from taskcore.registry import TaskRegistry
from taskcore.settings import Settings
from taskcore.store.flow import FlowRepository
from taskcore.store.repository import Inserted, TaskRepository
from taskcore.store.workflows import WorkflowRepository

log = structlog.get_logger("taskflow.service")

UNIQUE_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"
MAX_UNIQUE_FOR_SECONDS = 366 * 24 * 3600


def check_unique_key(key: str | None) -> str | None:
    if key is not None and not re.fullmatch(UNIQUE_KEY_PATTERN, key):
        raise TaskValidationError(
            f"unique_key must match {UNIQUE_KEY_PATTERN}",
            [{"field": "unique_key", "message": f"must match {UNIQUE_KEY_PATTERN}", "type": "string_pattern_mismatch"}],
        )
    return key


def _limit_error(field: str, message: str) -> TaskValidationError:
    return TaskValidationError(f"{field} {message}", [{"field": field, "message": message, "type": "limit"}])


def _encode_payload(payload: dict[str, Any]) -> bytes:
    try:
        return dumps_storable(payload)
    except NotStorableJSON as exc:
        raise _invalid_payload(str(exc)) from exc


def _invalid_payload(message: str) -> TaskValidationError:
    return TaskValidationError(
        f"payload cannot be stored: {message}", [{"field": "payload", "message": message, "type": "json_invalid"}]
    )


def new_ids(count: int) -> list[UUID]:
    """``count`` random (version 4) UUIDs from one read of the OS's random source, not one each."""
    random = os.urandom(16 * count)
    return [UUID(bytes=random[i : i + 16], version=4) for i in range(0, 16 * count, 16)]


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRequest:
    """One task as a client asks for it, before defaults and limits apply: what every submit path
    (REST, batch, dashboard form) builds and ``TaskService.submit``/``submit_many`` take.

    It holds what the task *is*; how it was submitted stays out: the ``Origin`` (the same for a
    whole batch) and the Idempotency-Key (a property of one HTTP request, not of a task, and one
    that a batch cannot carry), which are keyword arguments of ``submit``."""

    task_type: str
    payload: dict[str, Any]
    priority: int = 0
    max_retries: int | None = None
    timeout_seconds: int | None = None
    run_at: datetime | None = None
    delay_seconds: float | None = None
    queue: str | None = None  # None: the task type's declared queue, else "default"
    limit_keys: Sequence[str] = ()
    unique_key: str | None = None  # while a task with this key waits or runs, a submit returns it
    unique_for_seconds: int | None = None  # ... and for this long after it was created
    depends_on: Sequence[UUID] = ()  # tasks that must succeed first (taskcore.workflows)
    callback_url: str | None = None  # POSTed the task JSON when it ends (taskcore.callbacks)

    def fingerprint(self) -> str:
        """What a repeat with the same Idempotency-Key must match: what the client sent (a delay,
        not the run_at it became), payload key order ignored. Every field belongs here (a unit
        test checks it); keep the list's existing order so that stored fingerprints stay valid."""
        sent = [
            self.task_type,
            self.payload,
            self.priority,
            self.max_retries,
            self.timeout_seconds,
            None if self.delay_seconds is not None else self.run_at,
            self.delay_seconds,
        ]
        if self.queue is not None or self.limit_keys:  # appended only when set: older fingerprints stay valid
            sent += [self.queue, list(self.limit_keys)]
        if self.unique_key is not None or self.unique_for_seconds is not None:
            sent += [self.unique_key, self.unique_for_seconds]
        if self.depends_on:
            sent += [[str(p) for p in self.depends_on]]
        if self.callback_url is not None:
            sent += [["callback_url", self.callback_url]]
        return hashlib.sha256(orjson.dumps(sent, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a submit did: stored ``task`` (created), replayed an Idempotency-Key, or found the task
    holding the request's unique_key (duplicate: nothing stored)."""

    task: Task
    created: bool
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a submit came from, stored with the task for the worker: the API request id and
    the W3C traceparent of the submit span."""

    request_id: str | None = None
    traceparent: str | None = None
    actor: str | None = None  # who submits, as the task's history names it ('api:<key name>', ...)


class TaskService:
    def __init__(self, *, repo: TaskRepository, queue: TaskQueue, registry: TaskRegistry, settings: Settings) -> None:
        self.repo = repo
        self.queue = queue
        self.registry = registry
        self.settings = settings
        self.flow = FlowService(flow=FlowRepository(repo.pool), queue=queue, registry=registry, settings=settings)
        self._known_queues: set[str] = {DEFAULT_QUEUE}  # queues this process has recorded (a queue exists once named)
        # Plain single submits in flight together are stored in one INSERT and enqueued in one Redis call, so
        # that one API process's ceiling is not one commit per submit. No linger: an idle submit is written at
        # once; those arriving while a write is in flight form the next group.
        group = settings.submit_group_max_size
        self._grouped = group > 0
        self._plain_in_flight = 0  # plain single submits between their start and their INSERT's end
        self._inserts: Coalescer[NewTask, Task] = Coalescer(
            repo.insert_each, max_batch=max(group, 1), linger=0, name="submit"
        )
        self._enqueues: Coalescer[Enqueue, bool] = Coalescer(
            queue.enqueue_many, max_batch=max(group, 1), linger=0, name="enqueue"
        )

    async def submit(
        self, request: TaskRequest, *, origin: Origin, idempotency_key: str | None = None
    ) -> tuple[Task, bool]:
        """Validate, store, enqueue. Returns (task, created); created is False on an idempotent repeat
        (and on a unique_key duplicate: ``submit_one`` tells the two apart)."""
        done = await self.submit_one(request, origin=origin, idempotency_key=idempotency_key)
        return done.task, done.created

    async def submit_one(
        self, request: TaskRequest, *, origin: Origin, idempotency_key: str | None = None
    ) -> Submitted:
        new = self._prepare(request, origin=origin, idempotency_key=idempotency_key)
        await self._note_queues((new.queue,))
        if request.depends_on:
            if new.unique_key is not None:
                error = {"field": "unique_key", "message": "cannot be combined with depends_on", "type": "value_error"}
                raise TaskValidationError("unique_key cannot be combined with depends_on", [error])
            task, created = await self._insert_dependent(new, request.depends_on)
            duplicate = False
        elif new.unique_key is None and idempotency_key is None and self._grouped and self._plain_in_flight:
            # A plain submit while others are in flight: grouped with them; answered once its INSERT committed.
            self._plain_in_flight += 1
            try:
                task = await self._inserts.add(new)
            finally:
                self._plain_in_flight -= 1
            await self._enqueue(task, grouped=True)
            return Submitted(task, True)
        elif new.unique_key is None and idempotency_key is None:
            # Alone (or grouping off): its own INSERT and enqueue, the idle submit's path as it always was.
            self._plain_in_flight += 1
            try:
                task, created = await self.repo.insert(new)
            finally:
                self._plain_in_flight -= 1
            duplicate = False
        elif new.unique_key is None:
            task, created = await self.repo.insert(new)
            duplicate = False
        else:
            task, created, duplicate = await self.repo.insert_unique(new)
        if created:
            await self._enqueue(task)
        return Submitted(task, created, duplicate)

    async def submit_many(self, requests: Sequence[TaskRequest], *, origin: Origin) -> list[Inserted]:
        """Validate every request, then store them all in one statement and enqueue them in one
        pipelined round trip. Any invalid request rejects the whole batch (BatchValidationError,
        naming each request by its index) and nothing is stored."""
        news: list[NewTask] = []
        errors: list[dict[str, Any]] = []
        for index, (request, task_id) in enumerate(zip(requests, new_ids(len(requests)), strict=True)):
            if request.depends_on:
                errors.append(
                    {
                        "field": f"tasks.{index}.depends_on",
                        "message": "not accepted in a batch: submit a workflow (POST /api/v1/workflows)",
                        "type": "not_supported",
                        "index": index,
                    }
                )
                continue
            try:
                news.append(self._prepare(request, origin=origin, task_id=task_id))
            except TaskValidationError as exc:
                errors.extend({**e, "field": f"tasks.{index}.{e['field']}", "index": index} for e in exc.errors)
        if errors:
            raise TaskValidationError(
                f"{len({e['index'] for e in errors})} of {len(requests)} tasks are invalid", errors
            )
        await self._note_queues({n.queue for n in news})
        if any(n.unique_key is not None for n in news):
            stored = await self.repo.insert_batch(news)
        else:
            stored = await self.repo.insert_many(news)
        admitted = [
            Enqueue(t.id, t.run_at, t.priority, t.queue) for t in stored if t.admitted and t.duplicate_of is None
        ]
        try:
            await self.queue.enqueue_many(admitted)
        except DependencyUnavailable as exc:
            log.warning("tasks stored but not enqueued", count=len(stored), error=str(exc))
        if any(not t.admitted for t in stored):
            await self.flow.admit_quietly()
        return stored

    async def _insert_dependent(self, new: NewTask, parents: Sequence[UUID]) -> tuple[Task, bool]:
        if len(set(parents)) != len(parents):
            error = {"field": "depends_on", "message": "must not repeat a task", "type": "value_error"}
            raise TaskValidationError("depends_on repeats a task", [error])
        task = await WorkflowRepository(self.repo.pool).insert_dependent(new, parents)
        if task is None:  # the Idempotency-Key is taken: the original, or a conflict
            return await self.repo.insert(new)
        return task, True

    def prepare(self, request: TaskRequest, *, origin: Origin, task_id: UUID | None = None) -> NewTask:
        """Check one request as a submit would (for callers that store it their own way: workflows)."""
        return self._prepare(request, origin=origin, task_id=task_id)

    async def note_queues(self, names: Iterable[str]) -> None:
        await self._note_queues(names)

    async def _note_queues(self, names: Iterable[str]) -> None:
        new = [n for n in names if n not in self._known_queues]
        if new:
            await self.flow.flow.note_queues(new)
            self._known_queues.update(new)

    def _prepare(
        self,
        request: TaskRequest,
        *,
        origin: Origin,
        idempotency_key: str | None = None,
        task_id: UUID | None = None,
    ) -> NewTask:
        """Check one request against its type and the limits; the row to store."""
        spec = self.registry.get(request.task_type)
        encoded = _encode_payload(request.payload)
        if len(encoded) > self.settings.payload_limit_bytes:
            raise PayloadTooLarge(len(encoded), self.settings.payload_limit_bytes)
        spec.parse(request.payload)
        queue = DEFAULT_QUEUE if request.queue is None and spec.queue is None else request.queue or spec.queue
        retries = self._bounded(
            "max_retries", request.max_retries, self.settings.default_max_retries, self.settings.max_retries_limit
        )
        timeout = self._bounded(
            "timeout_seconds",
            request.timeout_seconds,
            self.settings.default_timeout_seconds,
            self.settings.max_timeout_seconds,
        )
        run_at = request.run_at
        if request.delay_seconds is not None:
            run_at = datetime.now(UTC) + timedelta(seconds=request.delay_seconds)
        if run_at is not None and run_at - datetime.now(UTC) > timedelta(seconds=self.settings.max_delay_seconds):
            field = "delay_seconds" if request.delay_seconds is not None else "run_at"
            raise _limit_error(field, f"must be at most {self.settings.max_delay_seconds} seconds ahead")
        return NewTask(
            id=task_id or uuid4(),
            task_type=request.task_type,
            payload=request.payload,
            priority=request.priority,
            max_retries=retries,
            timeout_seconds=timeout,
            run_at=run_at,
            idempotency_key=idempotency_key,
            request_hash=None if idempotency_key is None else request.fingerprint(),
            request_id=origin.request_id,
            traceparent=origin.traceparent,
            actor=origin.actor,
            payload_json=encoded.decode(),
            queue=check_queue_name(queue or DEFAULT_QUEUE),
            limit_keys=check_limit_keys(request.limit_keys) if request.limit_keys else (),
            unique_key=check_unique_key(request.unique_key),
            unique_for_seconds=self._bounded(
                "unique_for_seconds", request.unique_for_seconds, 0, MAX_UNIQUE_FOR_SECONDS
            ),
            callback_url=check_callback_url(request.callback_url, self.settings),
        )

    @staticmethod
    def _bounded(field: str, value: int | None, default: int, limit: int) -> int:
        if value is None:
            return default
        if value > limit:
            raise _limit_error(field, f"must be at most {limit}")
        return value

    async def cancel(self, task_id: UUID, *, actor: str | None = None) -> Task:
        task = await self.repo.cancel(task_id, actor=actor)
        try:
            if task.status is TaskStatus.RUNNING:
                await self.queue.abort(task_id)  # the worker's lease heartbeat also sees the request
            else:
                await self.queue.remove(task_id, queue=task.queue)  # a leftover job finds the task cancelled
        except DependencyUnavailable as exc:
            log.warning("queue not updated after cancel", task_id=str(task_id), error=str(exc))
        if task.limit_keys and task.status is TaskStatus.CANCELLED:
            await self.flow.admit_quietly()  # its slot is free
        return task

    async def retry(self, task_id: UUID, *, actor: str | None = None) -> Task:
        task = await self.repo.retry(task_id, actor=actor)
        await self._enqueue(task, after_cancel=True)
        return task

    async def _enqueue(self, task: Task, *, after_cancel: bool = False, grouped: bool = False) -> None:
        """Enqueue an admitted task (``grouped``: in one Redis call with the other submits in flight);
        run admission for one under a key or a pause (it may admit others too)."""
        try:
            if after_cancel:
                await self.queue.forget_abort(task.id)
            if task.admitted and grouped:
                await self._enqueues.add(Enqueue(task.id, task.run_at, task.priority, task.queue))
            elif task.admitted:
                await self.queue.enqueue(task.id, run_at=task.run_at, priority=task.priority, queue=task.queue)
        except DependencyUnavailable as exc:
            # Stored is what counts: the reconciler enqueues it once Redis answers.
            log.warning("task stored but not enqueued", task_id=str(task.id), error=str(exc))
        if not task.admitted and task.status not in (TaskStatus.BLOCKED, TaskStatus.CANCELLED):
            await self.flow.admit_quietly()
