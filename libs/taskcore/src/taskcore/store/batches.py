"""Batches in PostgreSQL: a batch submit's tasks stored with their batch row in one transaction.

The batch row counts the batch's tasks that are not terminal; the trigger of migration 0011 keeps
that count on every terminal transition and stores the on_complete task when it reaches 0, once.
A batch sent with an Idempotency-Key claims the key first (INSERT ... ON CONFLICT DO NOTHING on
the batch row): a repeat waits for the first one to commit, then finds it and replays its answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from taskcore.domain import NewTask, TaskStatus
from taskcore.errors import BatchIdempotencyConflict, BatchNotFound, IdempotencyConflict
from taskcore.store import states as st
from taskcore.store._pool import translate_errors
from taskcore.store.repository import DueTask, Inserted, _insert_many_on, _payload_json


@dataclass(frozen=True, slots=True)
class NewBatch:
    id: UUID
    on_complete: dict[str, Any] | None = None  # the callback task, defaults applied (migration 0011)
    on_complete_task_id: UUID | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What a batch submit did: ``answer`` is the (first) answer's JSON; ``replayed`` for a repeat
    of the same Idempotency-Key (nothing stored, ``items`` empty)."""

    id: UUID
    answer: bytes
    replayed: bool
    items: list[Inserted]
    callback: DueTask | None = None  # nothing of the batch stored: its on_complete task, stored at once


@dataclass(frozen=True, slots=True)
class Batch:
    id: UUID
    created_at: datetime
    total: int
    finished_at: datetime | None  # when the last of its tasks ended; None while one has not
    counts: dict[TaskStatus, int]
    on_complete_task_id: UUID | None
    on_complete_status: TaskStatus | None  # None: not stored yet (the batch has not finished)

    @property
    def finished(self) -> bool:
        return not any(n for s, n in self.counts.items() if not s.terminal)


_KEYED_INSERT = f"""WITH now AS (SELECT clock_timestamp() AS ts)
    INSERT INTO tasks (id, task_type, payload, status, priority, max_retries,
        timeout_seconds, idempotency_key, request_hash, run_at, request_id, traceparent,
        created_at, updated_at, queue, limit_keys, admitted, batch_id, batch_counted, actor,
        callback_url)
    SELECT $1, $2, $3::text::jsonb,
        CASE WHEN $9::timestamptz > now.ts THEN {st.SCHEDULED} ELSE {st.QUEUED} END,
        $4, $5, $6, $7, $8, COALESCE($9::timestamptz, now.ts), $10, $11, now.ts, now.ts,
        $12, $13::text[], cardinality($13::text[]) = 0 AND NOT EXISTS (SELECT 1 FROM pauses p
            WHERE (p.kind = 'queue' AND p.name = $12) OR (p.kind = 'task_type' AND p.name = $2)),
        $14, $15, $16, $17
    FROM now
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, status, priority, run_at, created_at, queue, admitted"""

_KEY_HOLDER = """SELECT id, status, priority, run_at, created_at, queue, admitted, request_hash
    FROM tasks WHERE idempotency_key = $1"""


def _inserted(row: asyncpg.Record, *, replayed: bool = False) -> Inserted:
    task_id = UUID(bytes=row["id"].bytes)  # a plain UUID: the answer is encoded by orjson
    return Inserted(
        task_id,
        TaskStatus(row["status"]),
        row["priority"],
        row["run_at"],
        row["created_at"],
        row["queue"],
        row["admitted"],
        task_id if replayed else None,
        replayed,
    )


async def _insert_keyed(conn: asyncpg.Connection, new: NewTask) -> Inserted:
    """A batch item with its own idempotency_key (no unique_key): stored, or the task that holds the key."""
    assert new.idempotency_key is not None
    for _ in range(3):  # the holder purged between the two statements: store it anew
        row = await conn.fetchrow(
            _KEYED_INSERT,
            new.id,
            new.task_type,
            _payload_json(new),
            new.priority,
            new.max_retries,
            new.timeout_seconds,
            new.idempotency_key,
            new.request_hash,
            new.run_at,
            new.request_id,
            new.traceparent,
            new.queue,
            list(new.limit_keys),
            new.batch_id,
            new.batch_counted,
            new.actor,
            new.callback_url,
        )
        if row is not None:
            return _inserted(row)
        held = await conn.fetchrow(_KEY_HOLDER, new.idempotency_key)
        if held is not None:
            if held["request_hash"] != new.request_hash:
                raise IdempotencyConflict(new.idempotency_key, held["id"])
            return _inserted(held, replayed=True)
    raise RuntimeError(f"idempotency_key {new.idempotency_key!r}: neither stored nor found")


class BatchRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self, batch: NewBatch, news: Sequence[NewTask], answer_of: Callable[[list[Inserted]], bytes]
    ) -> StoredBatch:
        """Store the batch row and its tasks (each ``NewTask`` carries ``batch.id``) in one transaction.

        Items with a unique_key or an idempotency_key go one at a time after the others (request
        order between them), the rest in one statement. ``answer_of`` builds the answer from the
        items; it is kept for a replay when the batch has an Idempotency-Key."""
        from taskcore.store.unique import insert_unique

        async with translate_errors(), self._pool.acquire() as conn, conn.transaction():
            created = await conn.fetchval(
                """INSERT INTO batches (id, on_complete, on_complete_task_id, idempotency_key, request_hash)
                   VALUES ($1, $2::text::jsonb, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id""",
                batch.id,
                None if batch.on_complete is None else orjson.dumps(batch.on_complete).decode(),
                batch.on_complete_task_id,
                batch.idempotency_key,
                batch.request_hash,
            )
            if created is None:  # the key was used (its transaction committed: we waited on the key)
                assert batch.idempotency_key is not None
                first = await conn.fetchrow(
                    "SELECT id, request_hash, answer FROM batches WHERE idempotency_key = $1", batch.idempotency_key
                )
                if first["request_hash"] != batch.request_hash:
                    raise BatchIdempotencyConflict(batch.idempotency_key, first["id"])
                return StoredBatch(first["id"], first["answer"].encode(), True, [])
            plain = [n for n in news if n.unique_key is None and n.idempotency_key is None]
            by_id = {i.id: i for i in await _insert_many_on(conn, plain)}
            for new in news:
                if new.unique_key is not None:
                    task, _, duplicate = await insert_unique(conn, new)
                    task_id = UUID(bytes=task.id.bytes)
                    replayed = not duplicate and task.id != new.id  # its idempotency_key was used
                    by_id[new.id] = Inserted(
                        task_id,
                        task.status,
                        task.priority,
                        task.run_at,
                        task.created_at,
                        task.queue,
                        task.admitted,
                        task_id if duplicate or replayed else None,
                        replayed,
                    )
                elif new.idempotency_key is not None:
                    by_id[new.id] = await _insert_keyed(conn, new)
            items = [by_id[n.id] for n in news]
            stored = sum(1 for i in items if i.duplicate_of is None)
            answer = answer_of(items)
            row = await conn.fetchrow(
                """UPDATE batches SET total = $2, remaining = CASE WHEN on_complete IS NULL THEN 0 ELSE $2 END,
                       finished_at = CASE WHEN $2 = 0 THEN clock_timestamp() END, answer = $3
                   WHERE id = $1 RETURNING *""",
                batch.id,
                stored,
                answer.decode() if batch.idempotency_key is not None else None,
            )
            callback = None
            if stored == 0 and batch.on_complete is not None:  # nothing to wait for: on_complete now
                await conn.execute("SELECT taskflow_batch_fire(b) FROM batches b WHERE b.id = $1", batch.id)
                due = await _callbacks(conn, [row["id"]])
                callback = due[0] if due else None
        return StoredBatch(batch.id, answer, False, items, callback)

    async def get(self, batch_id: UUID) -> Batch:
        async with translate_errors(), self._pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT b.id, b.created_at, b.total, b.on_complete_task_id,
                          (SELECT t.status FROM tasks t WHERE t.id = b.on_complete_task_id) AS on_complete_status
                     FROM batches b WHERE b.id = $1""",
                batch_id,
            )
            if row is None:
                raise BatchNotFound(batch_id)
            counts, last = await _counts_and_last(conn, batch_id)
        status = row["on_complete_status"]
        unfinished = any(n for s, n in counts.items() if not s.terminal)
        return Batch(
            row["id"],
            row["created_at"],
            row["total"],
            None if unfinished else last or row["created_at"],
            counts,
            row["on_complete_task_id"],
            None if status is None else TaskStatus(status),
        )

    async def context(self, batch_id: UUID) -> dict[str, Any]:
        """What an on_complete handler sees as ``ctx.batch``: ``{"id", "counts", "total"}``."""
        async with translate_errors(), self._pool.acquire() as conn:
            total = await conn.fetchval("SELECT total FROM batches WHERE id = $1", batch_id)
            counts = await _counts(conn, batch_id)
        return {"id": str(batch_id), "counts": {s.value: n for s, n in counts.items()}, "total": total or 0}

    async def purge(self, *, older_than: timedelta, limit: int) -> int:
        """Drop batches older than ``older_than`` none of whose tasks is left (retention purged them)."""
        async with translate_errors(), self._pool.acquire() as conn:
            result: str = await conn.execute(
                """DELETE FROM batches WHERE id IN (
                       SELECT b.id FROM batches b WHERE b.created_at < clock_timestamp() - $1::interval
                          AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.batch_id = b.id)
                          AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = b.on_complete_task_id)
                        LIMIT $2)""",
                older_than,
                limit,
            )
        return int(result.split()[-1])

    async def callbacks_due(self, batch_ids: Sequence[UUID]) -> list[DueTask]:
        """The on_complete tasks of these batches that are stored, queued and admitted (to enqueue)."""
        async with translate_errors(), self._pool.acquire() as conn:
            return await _callbacks(conn, batch_ids)


async def _counts(conn: asyncpg.Connection, batch_id: UUID) -> dict[TaskStatus, int]:
    counts, _ = await _counts_and_last(conn, batch_id)
    return counts


async def _counts_and_last(conn: asyncpg.Connection, batch_id: UUID) -> tuple[dict[TaskStatus, int], datetime | None]:
    """The batch's tasks by status (every status), and when the last of them ended."""
    rows = await conn.fetch(
        """SELECT status, count(*)::int AS n, max(finished_at) AS last
             FROM tasks WHERE batch_id = $1 GROUP BY status""",
        batch_id,
    )
    counts = {s: 0 for s in TaskStatus}
    counts.update({TaskStatus(r["status"]): r["n"] for r in rows})
    ends = [r["last"] for r in rows if r["last"] is not None]
    return counts, max(ends) if ends else None


async def _callbacks(conn: asyncpg.Connection, batch_ids: Sequence[UUID]) -> list[DueTask]:
    rows = await conn.fetch(
        f"""SELECT t.id, t.priority, t.run_at, t.queue FROM batches b JOIN tasks t ON t.id = b.on_complete_task_id
             WHERE b.id = ANY($1::uuid[]) AND b.fired_at IS NOT NULL AND t.status = {st.QUEUED} AND t.admitted""",
        list(batch_ids),
    )
    return [DueTask(r["id"], r["priority"], r["run_at"], r["queue"]) for r in rows]
