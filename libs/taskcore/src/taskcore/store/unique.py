"""Unique tasks: a submit with a ``unique_key`` stores a task only if no other task holds the key.

A task holds its key while it waits or runs (the partial unique index tasks_unique_active_key),
and until ``created_at + unique_for_seconds`` whatever its state (the row of unique_keys). Both
are decided by PostgreSQL inside one transaction, never by a read before the write:

1. the task is inserted with ON CONFLICT DO NOTHING: a waiting or running holder (or an
   Idempotency-Key already used) makes it store nothing; a concurrent submit of the same key
   waits on the index entry until the first commits, then stores nothing either;
2. the key's window is taken with INSERT ... ON CONFLICT DO UPDATE ... WHERE the current holder's
   window has ended (or its task is gone); PostgreSQL evaluates that on the locked, latest row.
   If the window still holds, the transaction rolls back and the holder is returned.

So the key is held for max(the task is unfinished, the window); a window of 0 (the default)
means "while waiting or running" only.
"""

from __future__ import annotations

import asyncpg

from taskcore.domain import NewTask, Task, TaskStatus
from taskcore.errors import IdempotencyConflict
from taskcore.store import states as st
from taskcore.store.repository import _COLUMNS, _payload_json, _task

_ATTEMPTS = 10  # a holder that finishes between the conflict and the look-up makes one more round

_INSERT = f"""WITH now AS (SELECT clock_timestamp() AS ts)
    INSERT INTO tasks (id, task_type, payload, status, priority, max_retries,
        timeout_seconds, idempotency_key, request_hash, run_at, request_id, traceparent,
        created_at, updated_at, queue, limit_keys, admitted, unique_key, batch_id, batch_counted, actor, callback_url)
    SELECT $1, $2, $3::text::jsonb,
        CASE WHEN $9::timestamptz > now.ts THEN {st.SCHEDULED} ELSE {st.QUEUED} END,
        $4, $5, $6, $7, $8, COALESCE($9::timestamptz, now.ts), $10, $11, now.ts, now.ts,
        $12, $13::text[], cardinality($13::text[]) = 0 AND NOT EXISTS (SELECT 1 FROM pauses p
            WHERE (p.kind = 'queue' AND p.name = $12) OR (p.kind = 'task_type' AND p.name = $2)),
        $14, $15::uuid, $16::bool, $17, $18
    FROM now
    ON CONFLICT DO NOTHING
    RETURNING {_COLUMNS}"""

_TAKE_WINDOW = """INSERT INTO unique_keys AS k (key, task_id, held_until)
    VALUES ($1, $2, $3::timestamptz + make_interval(secs => $4::float8))
    ON CONFLICT (key) DO UPDATE SET task_id = EXCLUDED.task_id, held_until = EXCLUDED.held_until
        WHERE k.held_until <= clock_timestamp() OR NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = k.task_id)
    RETURNING 1"""

_ACTIVE_HOLDER = f"SELECT {_COLUMNS} FROM tasks WHERE unique_key = $1 AND status IN {st.UNFINISHED}"
_WINDOW_HOLDER = f"""SELECT {", ".join("t." + c.strip() for c in _COLUMNS.split(","))}
    FROM unique_keys k JOIN tasks t ON t.id = k.task_id
    WHERE k.key = $1 AND k.held_until > clock_timestamp()"""


class _WindowHeld(Exception):
    """Rolls back a task stored while the key's window is still held."""


async def insert_unique(conn: asyncpg.Connection, new: NewTask) -> tuple[Task, bool, bool]:
    """(task, created, duplicate): the new task, an Idempotency-Key replay, or the key's holder."""
    assert new.unique_key is not None
    for _ in range(_ATTEMPTS):
        try:
            async with conn.transaction():  # a savepoint when the caller's batch is in a transaction
                row = await conn.fetchrow(
                    _INSERT,
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
                    new.unique_key,
                    new.batch_id,
                    new.batch_counted,
                    new.actor,
                    new.callback_url,
                )
                if row is not None:
                    took = await conn.fetchval(
                        _TAKE_WINDOW, new.unique_key, new.id, row["created_at"], float(new.unique_for_seconds or 0)
                    )
                    if took is None:
                        raise _WindowHeld
                    return _task(row), True, False
        except _WindowHeld:
            pass
        found = await _holder(conn, new)
        if found is not None:
            return found
    raise RuntimeError(f"unique_key {new.unique_key!r}: no holder found and none could be stored")


async def _holder(conn: asyncpg.Connection, new: NewTask) -> tuple[Task, bool, bool] | None:
    if new.idempotency_key is not None:
        existing = await conn.fetchrow(
            f"SELECT {_COLUMNS}, request_hash FROM tasks WHERE idempotency_key = $1", new.idempotency_key
        )
        if existing is not None:
            values = dict(existing.items())
            if values.pop("request_hash") != new.request_hash:
                raise IdempotencyConflict(new.idempotency_key, values["id"])
            values["status"] = TaskStatus(values["status"])
            values["limit_keys"] = tuple(values["limit_keys"])
            return _task_of(values), False, False
    for sql in (_ACTIVE_HOLDER, _WINDOW_HOLDER):
        row = await conn.fetchrow(sql, new.unique_key)
        if row is not None:
            return _task(row), False, True
    return None


def _task_of(values: dict[str, object]) -> Task:
    return Task(**values)  # type: ignore[arg-type]
