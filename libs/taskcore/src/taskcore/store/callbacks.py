"""The callbacks outbox (migration 0010): claiming due deliveries under a lease, recording each
attempt's outcome, and reading a task's deliveries.

The trigger on tasks writes a ``deliveries`` row in the transaction that ends a task; nothing here
writes one. A claim moves ``next_attempt_at`` to the end of the lease it takes, so a delivery whose
worker died is due again once the lease ends, and any worker claims it then. An outcome is recorded
only by the holder of the lease for that attempt: a late worker changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg

from taskcore.errors import TaskNotFound
from taskcore.store._pool import translate_errors

DeliveryStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a sender holds the lease of: attempt number ``attempt`` is its to make."""

    id: UUID
    task_id: UUID
    event: str
    url: str
    task: dict[str, Any]  # the task row as it was when it ended
    attempt: int
    created_at: datetime  # when the trigger wrote it: the instant the task ended


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to. ``status`` pending: try again at ``retry_in`` seconds."""

    delivery_id: UUID
    attempt: int
    status: DeliveryStatus
    status_code: int | None
    error: str | None
    duration_ms: float
    retry_in: float = 0.0


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True, slots=True)
class Delivery:
    id: UUID
    task_id: UUID
    event: str
    url: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    finished_at: datetime | None
    history: tuple[Attempt, ...] = ()


class DeliveryRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with translate_errors(), self._pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def _unsynced(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction whose commit does not wait for the WAL flush. Safe for the sender's outcomes: one
        lost in a PostgreSQL crash leaves the delivery pending, and it is sent again (at least once)."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            yield conn

    async def claim(self, *, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
        """Up to ``limit`` due deliveries, oldest due first, leased to ``owner``. One statement: an idle
        sender's poll (the common case) is one round trip that writes nothing."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """UPDATE deliveries d SET attempts = d.attempts + 1, lease_owner = $1,
                        lease_expires_at = clock_timestamp() + make_interval(secs => $3),
                        next_attempt_at = clock_timestamp() + make_interval(secs => $3)
                   WHERE d.id IN (SELECT id FROM deliveries
                                  WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
                                  ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                   RETURNING d.id, d.task_id, d.event, d.url, d.task, d.attempts, d.created_at""",
                owner,
                limit,
                lease_seconds,
            )
        return [
            Claimed(r["id"], r["task_id"], r["event"], r["url"], r["task"], r["attempts"], r["created_at"])
            for r in rows
        ]

    async def record(self, outcome: Outcome, *, owner: str) -> bool:
        """Record one attempt's outcome (and the delivery's new state); False when the lease was lost."""
        async with self._unsynced() as conn:
            recorded = await conn.fetchval(
                """WITH done AS (
                       UPDATE deliveries SET status = $3, last_status_code = $4, last_error = $5,
                           lease_owner = NULL, lease_expires_at = NULL,
                           next_attempt_at = clock_timestamp() + make_interval(secs => $7),
                           delivered_at = CASE WHEN $3 = 'delivered' THEN clock_timestamp() END,
                           finished_at = CASE WHEN $3 <> 'pending' THEN clock_timestamp() END
                       WHERE id = $1 AND attempts = $2 AND lease_owner = $8 AND status = 'pending'
                       RETURNING id),
                   tried AS (
                       INSERT INTO delivery_attempts (delivery_id, attempt, status_code, error, duration_ms)
                       SELECT id, $2, $4, $5, $6 FROM done
                       ON CONFLICT DO NOTHING)
                   SELECT count(*) FROM done""",
                outcome.delivery_id,
                outcome.attempt,
                outcome.status,
                outcome.status_code,
                outcome.error,
                outcome.duration_ms,
                outcome.retry_in,
                owner,
            )
        return bool(recorded)

    async def for_task(self, task_id: UUID) -> list[Delivery]:
        """A task's deliveries, oldest first, each with its attempts; TaskNotFound for an unknown task."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """SELECT d.id, d.task_id, d.event, d.url, d.status, d.attempts,
                          CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
                          d.last_status_code, d.last_error, d.created_at, d.delivered_at, d.finished_at,
                          COALESCE((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'at', a.at,
                                        'status_code', a.status_code, 'error', a.error,
                                        'duration_ms', a.duration_ms) ORDER BY a.attempt)
                                    FROM delivery_attempts a WHERE a.delivery_id = d.id), '[]') AS history
                   FROM deliveries d WHERE d.task_id = $1 ORDER BY d.created_at, d.id""",
                task_id,
            )
            if not rows and not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1)", task_id):
                raise TaskNotFound(task_id)
        return [
            Delivery(
                id=r["id"],
                task_id=r["task_id"],
                event=r["event"],
                url=r["url"],
                status=r["status"],
                attempts=r["attempts"],
                next_attempt_at=r["next_attempt_at"],
                last_status_code=r["last_status_code"],
                last_error=r["last_error"],
                created_at=r["created_at"],
                delivered_at=r["delivered_at"],
                finished_at=r["finished_at"],
                history=tuple(
                    Attempt(
                        a["attempt"], datetime.fromisoformat(a["at"]), a["status_code"], a["error"], a["duration_ms"]
                    )
                    for a in r["history"]
                ),
            )
            for r in rows
        ]

    async def pending_stats(self) -> tuple[int, float | None]:
        """Pending deliveries and the age in seconds of the oldest (the metrics gauge)."""
        async with self._conn() as conn:
            row = await conn.fetchrow(
                """SELECT count(*) AS n, EXTRACT(EPOCH FROM clock_timestamp() - min(created_at))::float8 AS oldest
                   FROM deliveries WHERE status = 'pending'"""
            )
        return row["n"], row["oldest"]
