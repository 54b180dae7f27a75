"""Queues, limits, pauses and admission in PostgreSQL.

Where the state lives: the slots of a ``max_running`` limit are the task rows themselves (an
admitted task that is queued or running holds one slot of each key it names), so every
transition that ends a run frees its slots in the statement that records it, a crash cannot
leak one (lease recovery ends the run) and a duplicate delivery cannot take a second (the claim
guard). Rate tokens are one GCRA timestamp per key in ``limit_rates``, written by the admitter.
The admitter holds a transaction-scoped advisory lock, so two processes never admit at once;
every process may try, and one that finds the lock taken leaves the work to the holder. It runs on
the main pool even through a transaction-pooling PgBouncer: the try-lock, the reads and the UPDATE
are one short transaction, which PgBouncer keeps on one server connection, and the lock ends with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from taskcore.domain import TaskStatus
from taskcore.errors import LimitNotFound
from taskcore.flow import AdmissionState, Candidate, Limit, LimitBook, plan_admission, rank_candidates
from taskcore.store._pool import translate_errors

ADMISSION_LOCK_KEY = 0x7A5CF12
PAUSE_KINDS = ("queue", "task_type")
_ACTIVE = ("scheduled", "queued", "running")
# A worker counts for a queue while it was seen this recently.
WORKER_SEEN_WITHIN = timedelta(seconds=60)

# The admitter's candidates: a loose index scan over the (queue, first key) groups that have
# unadmitted waiting tasks, from a cursor (so that more groups than one round takes are served in
# turn), then the best few due tasks of each group (tasks_unadmitted_idx serves both).
_CANDIDATES = """
WITH RECURSIVE groups AS (
    (SELECT queue, COALESCE(limit_keys[1], '') AS fk FROM tasks
      WHERE NOT admitted AND status IN ('scheduled', 'queued')
        AND (queue, COALESCE(limit_keys[1], '')) > ($3::text, $4::text)
      ORDER BY queue, COALESCE(limit_keys[1], '') LIMIT 1)
    UNION ALL
    SELECT n.queue, n.fk FROM groups g, LATERAL (
        SELECT queue, COALESCE(limit_keys[1], '') AS fk FROM tasks
         WHERE NOT admitted AND status IN ('scheduled', 'queued')
           AND (queue, COALESCE(limit_keys[1], '')) > (g.queue, g.fk)
         ORDER BY queue, COALESCE(limit_keys[1], '') LIMIT 1) n
), chosen AS (SELECT queue, fk FROM groups WHERE queue <> ALL($1::text[]) LIMIT $5)
SELECT c.queue, c.fk, t.id, t.limit_keys, t.priority, t.run_at
  FROM chosen c, LATERAL (
      SELECT id, limit_keys, priority, run_at FROM tasks
       WHERE NOT admitted AND status IN ('scheduled', 'queued') AND queue = c.queue
         AND COALESCE(limit_keys[1], '') = c.fk AND run_at <= clock_timestamp()
         AND task_type <> ALL($2::text[])
       ORDER BY priority DESC, run_at, id LIMIT $6) t
"""


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """A limit with what it governs now: slots in use and tasks running, and for a template its busiest keys."""

    limit: Limit
    in_use: int
    running: int
    busiest: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    paused: bool
    depth: dict[TaskStatus, int]
    due: int
    running: int
    oldest_due_age_seconds: float | None
    workers: int


@dataclass(frozen=True, slots=True)
class Admitted:
    """A task the admitter let start: the queue needs its queue, priority and due time."""

    id: UUID
    queue: str
    priority: int
    run_at: datetime


@dataclass(frozen=True, slots=True)
class Unadmitted:
    """A waiting task a pause took back (its arq job, if any, can go)."""

    id: UUID
    queue: str


def _limit(row: asyncpg.Record) -> Limit:
    return Limit(row["key"], row["max_running"], row["per_second"], row["burst"], row["updated_at"])


class FlowRepository:
    def __init__(self, pool: asyncpg.Pool, *, groups_per_round: int = 200, tasks_per_group: int = 20) -> None:
        self._pool = pool
        self._groups_per_round = groups_per_round
        self._tasks_per_group = tasks_per_group
        self._cursor: tuple[str, str] = ("", "")

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with translate_errors(), self._pool.acquire() as conn:
            yield conn

    # -- limits -------------------------------------------------------------------------------

    async def set_limit(self, limit: Limit) -> tuple[Limit, bool]:
        """Create or replace a limit; returns it and whether it is new."""
        async with self._conn() as conn:
            row = await conn.fetchrow(
                """INSERT INTO limits AS l (key, max_running, per_second, burst) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (key) DO UPDATE SET max_running = EXCLUDED.max_running,
                       per_second = EXCLUDED.per_second, burst = EXCLUDED.burst, updated_at = now()
                   RETURNING key, max_running, per_second, burst, updated_at, (xmax = 0) AS created""",
                limit.key,
                limit.max_running,
                limit.per_second,
                limit.burst,
            )
        return _limit(row), bool(row["created"])

    async def delete_limit(self, key: str) -> None:
        async with self._conn() as conn:
            deleted = await conn.fetchval("DELETE FROM limits WHERE key = $1 RETURNING key", key)
        if deleted is None:
            raise LimitNotFound(key)

    async def limits(self) -> list[LimitUsage]:
        """Every limit, with the slots it governs in use now (one statement over tasks_slots_idx)."""
        async with self._conn() as conn:
            limit_rows = await conn.fetch(
                "SELECT key, max_running, per_second, burst, updated_at FROM limits ORDER BY key"
            )
            usage_rows = await conn.fetch(
                """SELECT k, count(*) AS in_use, count(*) FILTER (WHERE status = 'running') AS running
                     FROM tasks, unnest(limit_keys) AS k
                    WHERE admitted AND status IN ('queued', 'running') AND limit_keys <> '{}'
                    GROUP BY k"""
            )
        book = LimitBook(_limit(r) for r in limit_rows)
        per_limit: dict[str, list[tuple[str, int, int]]] = {}
        for row in usage_rows:
            governing = book.for_key(row["k"])
            if governing is not None:
                per_limit.setdefault(governing.key, []).append((row["k"], row["in_use"], row["running"]))
        out = []
        for row in limit_rows:
            limit = _limit(row)
            keys = sorted(per_limit.get(limit.key, []), key=lambda k: (-k[1], k[0]))
            out.append(
                LimitUsage(
                    limit,
                    in_use=sum(k[1] for k in keys),
                    running=sum(k[2] for k in keys),
                    busiest=[(k[0], k[1]) for k in keys[:5]] if limit.template else [],
                )
            )
        return out

    async def limit(self, key: str) -> LimitUsage:
        for usage in await self.limits():
            if usage.limit.key == key:
                return usage
        raise LimitNotFound(key)

    # -- pauses and queues ----------------------------------------------------------------------

    async def pause(self, kind: str, name: str) -> list[Unadmitted]:
        """Pause a queue or task type; its waiting tasks stop being admitted (returned, for Redis)."""
        column = "queue" if kind == "queue" else "task_type"
        async with self._conn() as conn, conn.transaction():
            await conn.execute("INSERT INTO pauses (kind, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", kind, name)
            if kind == "queue":
                await conn.execute("INSERT INTO queues (name) VALUES ($1) ON CONFLICT DO NOTHING", name)
            # Serialised with the admitter, which could otherwise admit from a snapshot older than the pause.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", ADMISSION_LOCK_KEY)
            rows = await conn.fetch(
                f"""UPDATE tasks SET admitted = false, updated_at = clock_timestamp()
                    WHERE {column} = $1 AND admitted AND status IN ('scheduled', 'queued')
                    RETURNING id, queue""",
                name,
            )
        return [Unadmitted(r["id"], r["queue"]) for r in rows]

    async def resume(self, kind: str, name: str) -> bool:
        """Lift a pause; False when there was none. The admitter takes its tasks from here."""
        async with self._conn() as conn:
            found = await conn.fetchval("DELETE FROM pauses WHERE kind = $1 AND name = $2 RETURNING name", kind, name)
        return found is not None

    async def paused(self) -> set[tuple[str, str]]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT kind, name FROM pauses")
        return {(r["kind"], r["name"]) for r in rows}

    async def note_queues(self, names: Sequence[str]) -> None:
        """Record queues named by a task or a worker (a queue exists once something names it)."""
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO queues (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", list(names)
            )

    async def queues(self, *, name: str | None = None) -> list[QueueInfo]:
        """Depth, due, running, oldest due age and live workers of every queue (or one)."""
        async with self._conn() as conn:
            now = await conn.fetchval("SELECT clock_timestamp()")
            names = await conn.fetch("SELECT name FROM queues WHERE $1::text IS NULL OR name = $1 ORDER BY name", name)
            stats = await conn.fetch(
                """SELECT queue, status, count(*) AS n,
                          count(*) FILTER (WHERE run_at <= $1) AS due,
                          EXTRACT(EPOCH FROM $1 - min(run_at) FILTER (WHERE run_at <= $1))::float8 AS oldest
                     FROM tasks WHERE status IN ('scheduled', 'queued', 'running')
                      AND ($2::text IS NULL OR queue = $2)
                    GROUP BY queue, status""",
                now,
                name,
            )
            workers = await conn.fetch(
                """SELECT q, count(*) AS n FROM workers, unnest(queues) AS q
                    WHERE last_seen_at > $1::timestamptz - $2::interval GROUP BY q""",
                now,
                WORKER_SEEN_WITHIN,
            )
            paused = {r["name"] for r in await conn.fetch("SELECT name FROM pauses WHERE kind = 'queue'")}
        per_queue: dict[str, list[asyncpg.Record]] = {}
        for row in stats:
            per_queue.setdefault(row["queue"], []).append(row)
        live = {r["q"]: r["n"] for r in workers}
        known = [r["name"] for r in names]
        known += sorted(q for q in per_queue if q not in known and (name is None or q == name))
        return [self._queue_info(q, per_queue.get(q, []), q in paused, live.get(q, 0)) for q in known]

    @staticmethod
    def _queue_info(name: str, rows: list[asyncpg.Record], paused: bool, workers: int) -> QueueInfo:
        depth = {s: 0 for s in (TaskStatus.SCHEDULED, TaskStatus.QUEUED, TaskStatus.RUNNING)}
        due = 0
        oldest: float | None = None
        for row in rows:
            status = TaskStatus(row["status"])
            depth[status] = row["n"]
            if status is not TaskStatus.RUNNING:
                due += row["due"]
                if row["oldest"] is not None:
                    oldest = max(oldest or 0.0, row["oldest"])
        return QueueInfo(name, paused, depth, due, depth[TaskStatus.RUNNING], oldest, workers)

    # -- admission ----------------------------------------------------------------------------

    async def pending_admission(self) -> bool:
        """Whether any waiting task is due and not admitted (cheap: tasks_unadmitted_idx)."""
        async with self._conn() as conn:
            return bool(
                await conn.fetchval(
                    """SELECT EXISTS (SELECT 1 FROM tasks WHERE NOT admitted
                           AND status IN ('scheduled', 'queued') AND run_at <= clock_timestamp())"""
                )
            )

    async def admit(self, *, window: int) -> list[Admitted] | None:
        """Admit what may start now; None when another process holds the admission lock.

        Per queue, twice the concurrency of its live workers (``window`` while none is seen) bounds
        how many admitted tasks under a key may wait unstarted: Redis then holds only what
        starts soon, so a flood of one key cannot queue ahead of the others."""
        async with self._conn() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ADMISSION_LOCK_KEY):
                return None
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            paused = await conn.fetch("SELECT kind, name FROM pauses")
            rows = await conn.fetch(
                _CANDIDATES,
                [r["name"] for r in paused if r["kind"] == "queue"],
                [r["name"] for r in paused if r["kind"] == "task_type"],
                *self._cursor,
                self._groups_per_round,
                self._tasks_per_group,
            )
            candidates = rank_candidates(rows)
            groups = {(r["queue"], r["fk"]) for r in rows}
            self._cursor = max(groups) if len(groups) >= self._groups_per_round else ("", "")
            if not candidates:
                return []
            state = await self._admission_state(conn, now, candidates, window)
            book = LimitBook(_limit(r) for r in await conn.fetch("SELECT * FROM limits"))
            plan = plan_admission(candidates, book, state)
            if not plan:
                return []
            admitted = await conn.fetch(
                """UPDATE tasks AS t SET admitted = true, status = 'queued',
                        run_at = GREATEST(t.run_at, s.start), updated_at = clock_timestamp(),
                        actor = CASE WHEN t.status = 'queued' THEN t.actor ELSE 'admitter' END
                    FROM unnest($1::uuid[], $2::timestamptz[]) AS s(id, start)
                    WHERE t.id = s.id AND NOT t.admitted AND t.status IN ('scheduled', 'queued')
                    RETURNING t.id, t.queue, t.priority, t.run_at""",
                [p[0] for p in plan],
                [p[1] for p in plan],
            )
            if state.tat:
                await conn.execute(
                    """INSERT INTO limit_rates (key, tat) SELECT * FROM unnest($1::text[], $2::timestamptz[])
                       ON CONFLICT (key) DO UPDATE SET tat = EXCLUDED.tat""",
                    list(state.tat),
                    list(state.tat.values()),
                )
        return [Admitted(r["id"], r["queue"], r["priority"], r["run_at"]) for r in admitted]

    async def _admission_state(
        self, conn: asyncpg.Connection, now: datetime, candidates: Sequence[Candidate], window: int
    ) -> AdmissionState:
        queues = sorted({c.queue for c in candidates})
        keys = sorted({k for c in candidates for k in c.limit_keys})
        groups = await conn.fetch(
            """SELECT queue, COALESCE(limit_keys[1], '') AS fk, count(*) AS in_flight,
                      count(*) FILTER (WHERE status = 'queued') AS waiting
                 FROM tasks
                WHERE admitted AND status IN ('queued', 'running') AND limit_keys <> '{}'
                  AND queue = ANY($1::text[])
                GROUP BY 1, 2""",
            queues,
        )
        capacity = await conn.fetch(
            """SELECT q, sum(concurrency) AS n FROM workers, unnest(queues) AS q
                WHERE last_seen_at > $1::timestamptz - $2::interval AND q = ANY($3::text[]) GROUP BY q""",
            now,
            WORKER_SEEN_WITHIN,
            queues,
        )
        in_use = await conn.fetch(
            """SELECT k, count(*) AS n FROM tasks, unnest(limit_keys) AS k
                WHERE admitted AND status IN ('queued', 'running') AND limit_keys <> '{}'
                  AND limit_keys && $1::text[] AND k = ANY($1::text[])
                GROUP BY k""",
            keys,
        )
        tats = await conn.fetch("SELECT key, tat FROM limit_rates WHERE key = ANY($1::text[])", keys)
        held: dict[str, int] = {}
        for row in groups:
            held[row["queue"]] = held.get(row["queue"], 0) + row["waiting"]
        # Twice what the queue's live workers run at once, not more: every admitted task waits in Redis
        # in admission order, so a flood's tasks admitted ahead delay a small key's by room / capacity
        # task durations (the fair share is in what is admitted next). ``window`` when no worker is known.
        room = {q: 2 * int(c) for q, c in ((r["q"], r["n"]) for r in capacity)}
        return AdmissionState(
            now=now,
            room={q: room.get(q, window) - held.get(q, 0) for q in queues},
            in_use={r["k"]: r["n"] for r in in_use},
            tat={r["key"]: r["tat"] for r in tats},
            in_flight={(r["queue"], r["fk"]): r["in_flight"] for r in groups},
        )
