"""Read-only queries behind the dashboard's overview: counts, the last hour by minute, workers.

Each is one statement over an index: counts by status use tasks_status_created_idx, the
last hour reads tasks_finished_idx (finished tasks by finished_at), workers is a small table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from taskcore.domain import TaskStatus
from taskcore.store import states as st
from taskcore.store._pool import translate_errors


@dataclass(frozen=True, slots=True)
class MinuteBucket:
    """Tasks that finished within one minute."""

    minute: datetime
    succeeded: int
    failed: int
    cancelled: int


@dataclass(frozen=True, slots=True)
class WorkerSeen:
    id: str
    hostname: str
    pid: int
    concurrency: int
    started_at: datetime
    last_seen_at: datetime
    seconds_since_seen: float


@dataclass(frozen=True, slots=True)
class TypeHour:
    """One task type's finished tasks in the last hour."""

    task_type: str
    succeeded: int
    failed: int
    cancelled: int

    @property
    def per_minute(self) -> float:
        return (self.succeeded + self.failed + self.cancelled) / 60

    @property
    def failure_rate(self) -> float | None:
        done = self.succeeded + self.failed
        return None if done == 0 else self.failed / done


@dataclass(frozen=True, slots=True)
class Overview:
    counts: dict[TaskStatus, int]
    last_hour: list[MinuteBucket]
    workers: list[WorkerSeen]
    now: datetime
    by_type: list[TypeHour] = field(default_factory=list)  # the last hour, busiest first

    @property
    def finished_last_hour(self) -> int:
        return sum(b.succeeded + b.failed + b.cancelled for b in self.last_hour)

    @property
    def failure_rate_last_hour(self) -> float | None:
        """Failed among succeeded + failed in the last hour (cancelled ones are not failures)."""
        done = sum(b.succeeded + b.failed for b in self.last_hour)
        return None if done == 0 else sum(b.failed for b in self.last_hour) / done


class DashboardQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def overview(self, *, max_workers: int = 50, max_types: int = 20) -> Overview:
        async with translate_errors(), self._pool.acquire() as conn:
            now = await conn.fetchval("SELECT clock_timestamp()")
            count_rows = await conn.fetch("SELECT status, count(*) AS n FROM tasks GROUP BY status")
            minute_rows = await conn.fetch(
                f"""SELECT date_trunc('minute', finished_at) AS minute,
                          count(*) FILTER (WHERE status = {st.SUCCEEDED}) AS succeeded,
                          count(*) FILTER (WHERE status = {st.FAILED}) AS failed,
                          count(*) FILTER (WHERE status = {st.CANCELLED}) AS cancelled
                     FROM tasks
                    WHERE status IN {st.TERMINAL}
                      AND finished_at > $1::timestamptz - interval '1 hour'
                    GROUP BY 1 ORDER BY 1""",
                now,
            )
            type_rows = await conn.fetch(
                f"""SELECT task_type,
                          count(*) FILTER (WHERE status = {st.SUCCEEDED}) AS succeeded,
                          count(*) FILTER (WHERE status = {st.FAILED}) AS failed,
                          count(*) FILTER (WHERE status = {st.CANCELLED}) AS cancelled
                     FROM tasks
                    WHERE status IN {st.TERMINAL}
                      AND finished_at > $1::timestamptz - interval '1 hour'
                    GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT $2""",
                now,
                max_types,
            )
            worker_rows = await conn.fetch(
                """SELECT id, hostname, pid, concurrency, started_at, last_seen_at,
                          EXTRACT(EPOCH FROM $1::timestamptz - last_seen_at)::float8 AS seconds_since_seen
                     FROM workers ORDER BY last_seen_at DESC LIMIT $2""",
                now,
                max_workers,
            )
        counts = dict.fromkeys(TaskStatus, 0)
        counts.update({TaskStatus(r["status"]): r["n"] for r in count_rows})
        return Overview(
            counts=counts,
            last_hour=[MinuteBucket(**dict(r.items())) for r in minute_rows],
            workers=[WorkerSeen(**dict(r.items())) for r in worker_rows],
            now=now,
            by_type=[TypeHour(**dict(r.items())) for r in type_rows],
        )
