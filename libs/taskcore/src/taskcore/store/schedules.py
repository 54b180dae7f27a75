"""ScheduleRepository: schedules in PostgreSQL, and the firing of their slots.

Exactly one task per slot rests on one thing: slot tasks are inserted with ON CONFLICT DO NOTHING
against the unique index on tasks (schedule_id, scheduled_for). The leader's lock and the
schedule row's lock (FOR UPDATE SKIP LOCKED) only keep two processes from doing the same work;
if both ever did — a leader whose lock was lost mid-pass, a trigger racing a slot — the index
still lets one task per slot through. A slot's task and the schedule's advance are written in the
same transaction, so a leader killed mid-pass leaves both or neither.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import structlog

from taskcore.errors import ScheduleNameTaken, ScheduleNotFound
from taskcore.schedules import (
    CatchUp,
    LastRun,
    Overlap,
    Schedule,
    TaskTemplate,
    Timing,
    due_slots,
)
from taskcore.store import states as st
from taskcore.store._pool import translate_errors
from taskcore.store.repository import DueTask

log = structlog.get_logger("taskflow.schedules")

SCHEDULE_LOCK_KEY = 0x7A5CF12  # the schedule leader's advisory lock (the reconciler's is 0x7A5CF11)

_COLUMNS = """id, name, cron, every_seconds, timezone, task, overlap, catch_up, paused, next_run_at,
    last_slot_at, created_at, updated_at"""

_LAST_RUNS = """SELECT id, scheduled_for, status FROM tasks WHERE schedule_id = $1
    ORDER BY scheduled_for DESC LIMIT $2"""

# One statement stores the tasks of a schedule's slots; a slot that has its task already stores nothing.
_INSERT_SLOTS = f"""WITH now AS (SELECT clock_timestamp() AS ts)
    INSERT INTO tasks (id, task_type, payload, status, priority, max_retries, timeout_seconds, run_at,
        created_at, updated_at, queue, limit_keys, admitted, schedule_id, scheduled_for, actor, callback_url)
    SELECT s.id, $2, $3::jsonb, {st.QUEUED}, $4, $5, $6, now.ts, now.ts, now.ts, $7, $8::text[],
        cardinality($8::text[]) = 0 AND NOT EXISTS (SELECT 1 FROM pauses p
            WHERE (p.kind = 'queue' AND p.name = $7) OR (p.kind = 'task_type' AND p.name = $2)),
        $1, COALESCE(s.slot, now.ts), $11, $12
    FROM now, unnest($9::uuid[], $10::timestamptz[]) AS s(id, slot)
    ON CONFLICT (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL DO NOTHING
    RETURNING id, priority, run_at, queue, admitted, scheduled_for"""


def _schedule(row: asyncpg.Record, last_runs: Sequence[asyncpg.Record] = ()) -> Schedule:
    return Schedule(
        id=row["id"],
        name=row["name"],
        timing=Timing(cron=row["cron"], every_seconds=row["every_seconds"], timezone=row["timezone"]),
        task=TaskTemplate.from_json(row["task"]),
        overlap=Overlap(row["overlap"]),
        catch_up=CatchUp(row["catch_up"]),
        paused=row["paused"],
        next_run_at=row["next_run_at"],
        last_slot_at=row["last_slot_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_runs=tuple(LastRun(r["id"], r["scheduled_for"], r["status"]) for r in last_runs),
    )


@dataclass(frozen=True, slots=True)
class NewSchedule:
    name: str
    timing: Timing
    task: TaskTemplate
    overlap: Overlap
    catch_up: CatchUp
    paused: bool


@dataclass(slots=True)
class Fired:
    """What one firing pass stored: the tasks to enqueue (admitted) or leave to the admitter."""

    tasks: list[DueTask]
    skipped: int = 0  # due slots not run (overlap "skip" with a run in progress, or catch_up rules)


def _values(s: NewSchedule | Schedule) -> list[Any]:
    return [
        s.name,
        s.timing.cron,
        s.timing.every_seconds,
        s.timing.timezone,
        s.task.as_json(),
        s.overlap.value,
        s.catch_up.value,
        s.paused,
    ]


class ScheduleRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with translate_errors(), self._pool.acquire() as conn:
            yield conn

    async def create(self, new: NewSchedule) -> Schedule:
        async with self._conn() as conn:
            now = await conn.fetchval("SELECT clock_timestamp()")
            try:
                row = await conn.fetchrow(
                    f"""INSERT INTO schedules (id, name, cron, every_seconds, timezone, task, overlap, catch_up,
                            paused, next_run_at)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {_COLUMNS}""",
                    uuid4(),
                    *_values(new),
                    new.timing.next_after(now),
                )
            except asyncpg.UniqueViolationError as exc:
                raise ScheduleNameTaken(new.name) from exc
        return _schedule(row)

    async def get(self, schedule_id: UUID, *, last_runs: int = 10) -> Schedule:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM schedules WHERE id = $1", schedule_id)
            if row is None:
                raise ScheduleNotFound(schedule_id)
            runs = await conn.fetch(_LAST_RUNS, schedule_id, last_runs)
        return _schedule(row, runs)

    async def list(self, *, last_runs: int = 3) -> list[Schedule]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM schedules ORDER BY name")
            runs = await conn.fetch(
                """SELECT s.id AS schedule_id, r.id, r.scheduled_for, r.status FROM schedules s,
                       LATERAL (SELECT id, scheduled_for, status FROM tasks WHERE schedule_id = s.id
                                ORDER BY scheduled_for DESC LIMIT $1) r""",
                last_runs,
            )
        by_schedule: dict[UUID, list[asyncpg.Record]] = {}
        for run in runs:
            by_schedule.setdefault(run["schedule_id"], []).append(run)
        return [_schedule(r, by_schedule.get(r["id"], ())) for r in rows]

    async def update(self, schedule_id: UUID, change: Callable[[Schedule, datetime], Schedule]) -> Schedule:
        """Apply ``change`` (given the schedule and the database's now) to the locked row and save it.
        The lock keeps a firing pass from advancing the schedule under the change."""
        async with self._conn() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS}, clock_timestamp() AS now FROM schedules WHERE id = $1 FOR UPDATE", schedule_id
            )
            if row is None:
                raise ScheduleNotFound(schedule_id)
            changed = change(_schedule(row), row["now"])
            try:
                saved = await conn.fetchrow(
                    f"""UPDATE schedules SET name = $2, cron = $3, every_seconds = $4, timezone = $5, task = $6,
                            overlap = $7, catch_up = $8, paused = $9, next_run_at = $10,
                            updated_at = clock_timestamp()
                        WHERE id = $1 RETURNING {_COLUMNS}""",
                    schedule_id,
                    *_values(changed),
                    changed.next_run_at,
                )
            except asyncpg.UniqueViolationError as exc:
                raise ScheduleNameTaken(changed.name) from exc
            runs = await conn.fetch(_LAST_RUNS, schedule_id, 10)
        return _schedule(saved, runs)

    async def delete(self, schedule_id: UUID) -> None:
        async with self._conn() as conn:
            deleted = await conn.fetchval("DELETE FROM schedules WHERE id = $1 RETURNING id", schedule_id)
        if deleted is None:
            raise ScheduleNotFound(schedule_id)

    async def trigger(self, schedule_id: UUID) -> tuple[UUID, DueTask]:
        """Store a run now, outside the slots: scheduled_for is the current instant. Returns its task."""
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM schedules WHERE id = $1", schedule_id)
            if row is None:
                raise ScheduleNotFound(schedule_id)
            schedule = _schedule(row)
            while True:  # an instant equal to a slot's (to the microsecond) finds it taken: take the next
                stored = await _insert_slots(conn, schedule, [None])
                if stored:
                    return stored[0].id, stored[0]

    async def due_count(self) -> int:
        async with self._conn() as conn:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM schedules WHERE NOT paused AND next_run_at <= clock_timestamp()"
            )
        return n

    @asynccontextmanager
    async def leading(self) -> AsyncIterator[asyncpg.Connection | None]:
        """A transaction holding the schedule leader's lock, or None when another process holds it."""
        async with self._conn() as conn, conn.transaction():
            held = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SCHEDULE_LOCK_KEY)
            yield conn if held else None

    async def fire_due(self, conn: asyncpg.Connection, *, limit: int, now: datetime | None = None) -> Fired:
        """Fire every due schedule (at most ``limit``) in the caller's transaction: store its slots'
        tasks and move next_run_at past now. Each schedule is a savepoint, so one that fails is
        logged and retried next pass without holding up the others. ``now`` is the database's
        clock unless given (a firing as of another instant: the DST and catch-up tests)."""
        if now is None:
            now = await conn.fetchval("SELECT clock_timestamp()")
        rows = await conn.fetch(
            f"""SELECT {_COLUMNS} FROM schedules WHERE NOT paused AND next_run_at <= $1
                ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
            now,
            limit,
        )
        fired = Fired([])
        for row in rows:
            schedule = _schedule(row)
            try:
                async with conn.transaction():
                    await self._fire_one(conn, schedule, now, fired)
            except (asyncpg.PostgresError, ValueError, OverflowError) as exc:
                log.warning("schedule not fired", schedule=schedule.name, error=f"{type(exc).__name__}: {exc}")
        return fired

    async def _fire_one(self, conn: asyncpg.Connection, schedule: Schedule, now: datetime, fired: Fired) -> None:
        due = due_slots(schedule.timing, schedule.next_run_at, now, schedule.catch_up)
        if due and schedule.overlap is Overlap.SKIP:
            busy = await conn.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM tasks WHERE schedule_id = $1 AND status IN {st.UNFINISHED})",
                schedule.id,
            )
            run = [] if busy else due[-1:]  # skip: one run at a time, so at most the newest slot
            fired.skipped += len(due) - len(run)
            due = run
        stored = await _insert_slots(conn, schedule, due)
        fired.tasks.extend(stored)
        await conn.execute(
            """UPDATE schedules SET next_run_at = $2, last_slot_at = COALESCE($3, last_slot_at)
               WHERE id = $1""",
            schedule.id,
            schedule.timing.next_after(now),
            due[-1] if due else None,
        )


async def _insert_slots(
    conn: asyncpg.Connection, schedule: Schedule, slots: Sequence[datetime | None]
) -> list[DueTask]:
    """Store one task per slot (None: the current instant); those whose slot has a task are left out."""
    if not slots:
        return []
    t = schedule.task
    rows = await conn.fetch(
        _INSERT_SLOTS,
        schedule.id,
        t.task_type,
        t.payload,
        t.priority,
        t.max_retries,
        t.timeout_seconds,
        t.queue,
        list(t.limit_keys),
        [uuid4() for _ in slots],
        list(slots),
        f"schedule:{schedule.name}",
        t.callback_url,
    )
    return [DueTask(r["id"], r["priority"], r["run_at"], r["queue"], r["admitted"]) for r in rows]
