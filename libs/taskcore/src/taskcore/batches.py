"""Batches: a batch submit's tasks as one unit, with counts, an optional on_complete task, and
idempotent replays (docs/batches.md).

``submit_batch`` validates every item (and on_complete) as a submit would, then stores the batch
row and its tasks in one transaction (taskcore.store.batches) and enqueues them in one round trip.
on_complete is stored by PostgreSQL itself, in the transaction that ends the batch's last task
(migration 0011); whoever committed that transaction enqueues it (the worker), and the
reconciler enqueues it otherwise (a cancel through the API, a worker that died after its commit).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import orjson
import structlog

from taskcore.domain import NewTask
from taskcore.errors import DependencyUnavailable, TaskValidationError
from taskcore.queue import Enqueue
from taskcore.service import Origin, TaskRequest, TaskService, new_ids
from taskcore.store.batches import BatchRepository, NewBatch, StoredBatch
from taskcore.store.repository import Inserted

log = structlog.get_logger("taskflow.batches")

IDEMPOTENCY_KEY_MAX = 255  # as the single submit's Idempotency-Key header


@dataclass(frozen=True, slots=True, kw_only=True)
class OnComplete:
    """The task to run once every task of the batch is terminal; its handler sees ``ctx.batch``."""

    task_type: str
    payload: dict[str, Any]
    queue: str | None = None
    priority: int = 0
    max_retries: int | None = None
    timeout_seconds: int | None = None


def batch_fingerprint(
    requests: Sequence[TaskRequest], keys: Sequence[str | None], on_complete: OnComplete | None
) -> str:
    """What a repeat of a batch's Idempotency-Key must match: every item (as its own fingerprint
    and key) and on_complete."""
    sent: list[Any] = [[r.fingerprint(), k] for r, k in zip(requests, keys, strict=True)]
    if on_complete is not None:
        sent.append(
            [
                on_complete.task_type,
                on_complete.payload,
                on_complete.queue,
                on_complete.priority,
                on_complete.max_retries,
                on_complete.timeout_seconds,
            ]
        )
    return hashlib.sha256(orjson.dumps(sent, option=orjson.OPT_SORT_KEYS)).hexdigest()


def batch_answer(batch_id: UUID, items: Sequence[Inserted]) -> bytes:
    """The answer of POST /api/v1/tasks/batch (kept as it is for an Idempotency-Key replay)."""
    out: list[dict[str, Any]] = []
    for t in items:
        item: dict[str, Any] = {
            "id": t.id,
            "status": t.status,
            "run_at": t.run_at,
            "created_at": t.created_at,
            "location": f"/api/v1/tasks/{t.id}",
        }
        if t.duplicate_of is not None:
            item["duplicate_of"] = t.duplicate_of
            item["duplicate"] = True
            if t.replayed:
                item["idempotent_replay"] = True
        out.append(item)
    # Built with orjson directly: at 1,000 items, FastAPI's generic encoder would cost more than the insert.
    return orjson.dumps({"batch_id": batch_id, "count": len(out), "items": out}, option=orjson.OPT_UTC_Z)


def _check_key(index: int, key: str | None, seen: dict[str, int]) -> list[dict[str, Any]]:
    if key is None:
        return []
    field = f"tasks.{index}.idempotency_key"
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
        return [{"field": field, "message": f"must be 1 to {IDEMPOTENCY_KEY_MAX} characters", "type": "string_length"}]
    if key in seen:
        message = f"repeats the idempotency_key of tasks.{seen[key]}"
        return [{"field": field, "message": message, "type": "value_error"}]
    seen[key] = index
    return []


async def submit_batch(
    service: TaskService,
    requests: Sequence[TaskRequest],
    *,
    origin: Origin,
    keys: Sequence[str | None] | None = None,
    on_complete: OnComplete | None = None,
    idempotency_key: str | None = None,
    answer_of: Callable[[UUID, Sequence[Inserted]], bytes] = batch_answer,
) -> StoredBatch:
    """Validate every item and on_complete (any error rejects the batch and stores nothing, each
    error naming its field: ``tasks.3.payload.n``, ``on_complete.payload``), then store and enqueue."""
    keys = list(keys) if keys is not None else [None] * len(requests)
    ids = new_ids(len(requests) + 2)
    batch_id, callback_id = ids[-2], ids[-1]
    news, spec = _prepare_all(service, requests, keys, ids, batch_id, on_complete, origin)
    await service.note_queues({n.queue for n in news} | ({spec["queue"]} if spec else set()))
    batch = NewBatch(
        id=batch_id,
        on_complete=spec,
        on_complete_task_id=callback_id if spec is not None else None,
        idempotency_key=idempotency_key,
        request_hash=None if idempotency_key is None else batch_fingerprint(requests, keys, on_complete),
    )
    stored = await BatchRepository(service.repo.pool).create(batch, news, lambda items: answer_of(batch_id, items))
    if stored.replayed:
        return stored
    admitted = [
        Enqueue(t.id, t.run_at, t.priority, t.queue) for t in stored.items if t.admitted and t.duplicate_of is None
    ]
    if stored.callback is not None:
        c = stored.callback
        admitted.append(Enqueue(c.id, c.run_at, c.priority, c.queue))
    try:
        await service.queue.enqueue_many(admitted)
    except DependencyUnavailable as exc:  # stored is what counts: the reconciler enqueues them
        log.warning("batch stored but not enqueued", batch_id=str(batch_id), count=len(admitted), error=str(exc))
    if any(not t.admitted for t in stored.items if t.duplicate_of is None):
        await service.flow.admit_quietly()
    return stored


def _prepare_all(
    service: TaskService,
    requests: Sequence[TaskRequest],
    keys: Sequence[str | None],
    ids: Sequence[UUID],
    batch_id: UUID,
    on_complete: OnComplete | None,
    origin: Origin,
) -> tuple[list[NewTask], dict[str, Any] | None]:
    news: list[NewTask] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, (request, key, task_id) in enumerate(zip(requests, keys, ids, strict=False)):
        errors.extend({**e, "index": index} for e in _check_key(index, key, seen))
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
            new = service.prepare(request, origin=origin, task_id=task_id)
        except TaskValidationError as exc:
            errors.extend({**e, "field": f"tasks.{index}.{e['field']}", "index": index} for e in exc.errors)
            continue
        news.append(_with(new, batch_id, key, request, counted=on_complete is not None))
    spec: dict[str, Any] | None = None
    if on_complete is not None:
        try:
            spec = _on_complete_spec(service, on_complete, origin)
        except TaskValidationError as exc:
            errors.extend({**e, "field": f"on_complete.{e['field']}"} for e in exc.errors)
    if errors:
        bad = len({e["index"] for e in errors if "index" in e})
        what = f"{bad} of {len(requests)} tasks are invalid" if bad else "on_complete is invalid"
        raise TaskValidationError(what, errors)
    return news, spec


def _with(new: NewTask, batch_id: UUID, key: str | None, request: TaskRequest, *, counted: bool) -> NewTask:
    if key is None:
        return replace(new, batch_id=batch_id, batch_counted=counted)
    return replace(
        new, batch_id=batch_id, batch_counted=counted, idempotency_key=key, request_hash=request.fingerprint()
    )


def _on_complete_spec(service: TaskService, on_complete: OnComplete, origin: Origin) -> dict[str, Any]:
    """on_complete checked as a submit of it would be, and stored with its defaults applied."""
    new = service.prepare(
        TaskRequest(
            task_type=on_complete.task_type,
            payload=on_complete.payload,
            priority=on_complete.priority,
            max_retries=on_complete.max_retries,
            timeout_seconds=on_complete.timeout_seconds,
            queue=on_complete.queue,
        ),
        origin=origin,
    )
    return {
        "task_type": new.task_type,
        "payload": new.payload,
        "queue": new.queue,
        "priority": new.priority,
        "max_retries": new.max_retries,
        "timeout_seconds": new.timeout_seconds,
    }
