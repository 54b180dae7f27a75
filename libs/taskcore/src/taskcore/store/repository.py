"""TaskRepository: plain SQL over asyncpg. Every state change is one guarded UPDATE.

A transition names the status (and, for a running task, the attempt) it expects; when the
row no longer matches — a duplicate delivery, a late worker, a cancel that won the race —
the UPDATE matches nothing and the caller is told so instead of overwriting newer state.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from taskcore.domain import RETRYABLE_STATES, NewTask, QueueStats, Task, TaskStatus
from taskcore.errors import IdempotencyConflict, InvalidTransition, TaskNotFound, TaskValidationError
from taskcore.store import states as st
from taskcore.store import workflows as deps
from taskcore.store._pool import translate_errors

_COLUMNS = """id, task_type, payload, status, priority, attempt, max_retries, timeout_seconds,
    created_at, updated_at, run_at, started_at, finished_at, cancel_requested, result, error,
    idempotency_key, request_id, traceparent, queue, limit_keys, admitted, schedule_id, scheduled_for, unique_key,
    workflow_id, step_ref AS ref, depends_on, batch_id, batch_counted, completes_batch, callback_url"""
# What a read returns: the task and its progress (the claim and the workers' writes never read progress).
_READ_COLUMNS = _COLUMNS + ", progress"

# Whether a task may be admitted as it is stored or re-queued, without the admitter: no limit key
# and neither its queue nor its type paused (taskcore/store/flow.py admits the others).
_UNGATED = """(tasks.limit_keys = '{}' AND NOT EXISTS (SELECT 1 FROM pauses p
    WHERE (p.kind = 'queue' AND p.name = tasks.queue) OR (p.kind = 'task_type' AND p.name = tasks.task_type)))"""

# The user actions' transitions, shared with bulk actions (taskcore/store/bulk.py): waiting ->
# cancelled at once, running -> cancel requested (its worker stops it); failed or cancelled ->
# queued with a fresh attempt budget. The caller guards the source status.
CANCEL_SET = f"""cancel_requested = true, updated_at = clock_timestamp(),
    status = CASE WHEN tasks.status = {st.RUNNING} THEN tasks.status ELSE {st.CANCELLED} END,
    finished_at = CASE WHEN tasks.status = {st.RUNNING} THEN NULL ELSE clock_timestamp() END"""
_RETRY_RESET = """attempt = 0, run_at = clock_timestamp(),
    updated_at = clock_timestamp(), started_at = NULL, finished_at = NULL,
    result = NULL, error = NULL, cancel_requested = false, progress = NULL,
    lease_expires_at = NULL, worker_id = NULL"""
RETRY_SET = f"status = {st.QUEUED}, {_RETRY_RESET}, admitted = {_UNGATED}"

# Who makes a transition, for its history (migration 0012): every statement that sets status sets
# tasks.actor too, which the history trigger copies. A worker's transitions name the worker that
# holds the task (SET reads the row before the statement, so this works where worker_id is cleared).
_BY_WORKER = "actor = 'worker:' || tasks.worker_id"
# A cancel the worker carries out names who asked for it: the actor the cancel request left on the row.
_CANCEL_NOTE = """E'\\n' || jsonb_build_object('reason', 'cancel requested',
    'requested_by', split_part(tasks.actor, E'\\n', 1))::text"""


def _note(**detail: str) -> str:
    """An SQL literal to append to an actor: a newline and ``detail`` as JSON (the history's detail)."""
    text = orjson.dumps(detail).decode().replace("'", "''")
    return f"E'\\n' || '{text}'"


def _task(row: asyncpg.Record) -> Task:
    return _task_values(dict(row.items()))


def _task_values(values: dict[str, Any]) -> Task:
    values["status"] = TaskStatus(values["status"])
    values["limit_keys"] = tuple(values["limit_keys"])
    values["depends_on"] = tuple(values["depends_on"])
    return Task(**values)


@dataclass(frozen=True, slots=True)
class ListFilter:
    statuses: Sequence[TaskStatus] = ()
    task_type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    queue: str | None = None
    workflow_id: UUID | None = None
    schedule_id: UUID | None = None
    limit_key: str | None = None  # tasks naming this limit key
    error_type: str | None = None  # the error.type of the task's last failed attempt
    payload: dict[str, Any] | None = None  # containment: payload @> this (GIN tasks_payload_idx)
    batch_id: UUID | None = None  # the tasks a batch submit stored
    # A new filter is a field here and a line in _CONDITIONS: the list, the dashboard and bulk
    # actions (taskcore/store/bulk.py) all build their WHERE with filter_conditions().


# ListFilter field -> its condition over ``tasks`` ({} is the bound value's $n), applied when the
# field is not None. A new filter is a field on ListFilter and a line here.
_CONDITIONS: tuple[tuple[str, str], ...] = (
    ("task_type", "tasks.task_type = {}"),
    ("queue", "tasks.queue = {}"),
    ("schedule_id", "tasks.schedule_id = {}"),
    ("workflow_id", "tasks.workflow_id = {}"),
    ("batch_id", "tasks.batch_id = {}"),
    ("created_after", "tasks.created_at > {}"),
    ("created_before", "tasks.created_at < {}"),
    ("limit_key", "tasks.limit_keys @> ARRAY[{}::text]"),
    ("error_type", "tasks.error->>'type' = {}"),
)


def filter_conditions(filters: ListFilter, arg: Callable[[Any], str]) -> list[str]:
    """The SQL conditions of ``filters`` over ``tasks``; ``arg`` binds a value and returns its $n."""
    conditions: list[str] = []
    if filters.statuses:
        conditions.append(f"tasks.status = ANY({arg([s.value for s in filters.statuses])}::text[])")
    for name, condition in _CONDITIONS:
        value = getattr(filters, name)
        if value is not None:
            conditions.append(condition.format(arg(value)))
    if filters.payload is not None:
        conditions.append(f"tasks.payload @> {arg(orjson.dumps(filters.payload).decode())}::text::jsonb")
    return conditions


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Task]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DueTask:
    """What the queue needs to (re-)enqueue a waiting task."""

    id: UUID
    priority: int
    run_at: datetime
    queue: str = "default"
    admitted: bool = True


@dataclass(frozen=True, slots=True)
class Inserted:
    """A task stored by ``insert_many``."""

    id: UUID
    status: TaskStatus
    priority: int
    run_at: datetime
    created_at: datetime
    queue: str = "default"
    admitted: bool = True
    duplicate_of: UUID | None = None  # a unique_key already held: this is that task, nothing was stored
    replayed: bool = False  # with duplicate_of: the item's idempotency_key was used already (that task)


@dataclass(frozen=True, slots=True)
class Success:
    """A finished attempt to record: ``result_json`` is the result already encoded as JSON text."""

    task_id: UUID
    attempt: int
    result_json: str


@dataclass(frozen=True, slots=True)
class Succeeded:
    """What ``succeed_many`` recorded, and the children it unblocked."""

    recorded: set[UUID]
    unblocked: list[deps.Unblocked]


@dataclass(frozen=True, slots=True)
class Recovered:
    """A running task whose lease expired, and where the reconciler moved it."""

    id: UUID
    status: TaskStatus
    priority: int
    run_at: datetime
    queue: str = "default"
    admitted: bool = True


def _payload_json(new: NewTask) -> str:
    return new.payload_json if new.payload_json is not None else orjson.dumps(new.payload).decode()


def encode_cursor(task: Task) -> str:
    raw = orjson.dumps([task.created_at.isoformat(), str(task.id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, task_id = orjson.loads(raw)
        return datetime.fromisoformat(created).astimezone(UTC), UUID(task_id)
    except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
        raise TaskValidationError(
            "invalid cursor",
            [{"field": "cursor", "message": "not a cursor returned by this API", "type": "invalid_cursor"}],
        ) from exc


class TaskRepository:
    def __init__(self, pool: asyncpg.Pool, *, leader_pool: asyncpg.Pool | None = None) -> None:
        self._pool = pool
        # A direct session for leadership when ``pool`` goes through a transaction-pooling PgBouncer.
        self._leader_pool = leader_pool or pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with translate_errors(), self._pool.acquire() as conn:
            yield conn

    async def ping(self) -> None:
        async with self._conn() as conn:
            # Reading the table (no row) rather than SELECT 1: a database never migrated is not ready.
            await conn.fetchval("SELECT 1 FROM tasks LIMIT 0")

    # -- submit and query -------------------------------------------------------------

    async def insert(self, new: NewTask) -> tuple[Task, bool]:
        """Store a task; with an Idempotency-Key already used, return the original (created=False)."""
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"""WITH now AS (SELECT clock_timestamp() AS ts)  -- one instant: a task due now has run_at = created_at
                    INSERT INTO tasks (id, task_type, payload, status, priority, max_retries,
                        timeout_seconds, idempotency_key, request_hash, run_at, request_id, traceparent,
                        created_at, updated_at, queue, limit_keys, admitted, actor, callback_url)
                    SELECT $1, $2, $3::text::jsonb,
                        CASE WHEN $9::timestamptz > now.ts THEN {st.SCHEDULED} ELSE {st.QUEUED} END,
                        $4, $5, $6, $7, $8, COALESCE($9::timestamptz, now.ts), $10, $11, now.ts, now.ts,
                        $12, $13::text[], cardinality($13::text[]) = 0 AND NOT EXISTS (SELECT 1 FROM pauses p
                            WHERE (p.kind = 'queue' AND p.name = $12) OR (p.kind = 'task_type' AND p.name = $2)),
                        $14, $15
                    FROM now
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING {_COLUMNS}""",
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
                new.actor,
                new.callback_url,
            )
            if row is not None:
                return _task(row), True
            existing = await conn.fetchrow(
                f"SELECT {_COLUMNS}, request_hash FROM tasks WHERE idempotency_key = $1", new.idempotency_key
            )
        if existing is None:  # deleted by retention between the two statements: store it anew
            return await self.insert(new)
        values = dict(existing.items())
        if values.pop("request_hash") != new.request_hash:
            raise IdempotencyConflict(new.idempotency_key or "", values["id"])
        return _task_values(values), False

    async def insert_many(self, news: Sequence[NewTask]) -> list[Inserted]:
        """Store many tasks (without Idempotency-Keys) in one statement: all of them or, on error, none.

        Every row gets the same instant as ``created_at`` (and as ``run_at`` when due now), so one
        row comes back — that instant and the count — instead of one per task; status and run_at
        follow from it exactly as the statement sets them."""
        if not news:
            return []
        async with self._conn() as conn:
            return await _insert_many_on(conn, news)

    async def insert_each(self, news: Sequence[NewTask]) -> list[Task]:
        """Store many single submits (no Idempotency-Key, no unique_key) in one statement, each row
        as ``insert`` stores it (its own request id and traceparent): the API's submits that arrive
        together, grouped (``TaskService.submit_one``). All of them or, on error, none."""
        if not news:
            return []
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"""WITH now AS MATERIALIZED (SELECT clock_timestamp() AS ts)
                    INSERT INTO tasks (id, task_type, payload, status, priority, max_retries,
                        timeout_seconds, run_at, request_id, traceparent, created_at, updated_at,
                        queue, limit_keys, admitted, actor, callback_url)
                    SELECT n.id, n.task_type, n.payload::jsonb,
                        CASE WHEN n.run_at > now.ts THEN {st.SCHEDULED} ELSE {st.QUEUED} END,
                        n.priority, n.max_retries, n.timeout_seconds, COALESCE(n.run_at, now.ts),
                        n.request_id, n.traceparent, now.ts, now.ts, n.queue, string_to_array(n.keys, ','),
                        n.keys = '' AND NOT EXISTS (SELECT 1 FROM pauses p
                            WHERE (p.kind = 'queue' AND p.name = n.queue)
                               OR (p.kind = 'task_type' AND p.name = n.task_type)),
                        n.actor, n.callback_url
                    FROM now, unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::int[],
                                $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                                $13::text[])
                        AS n(id, task_type, payload, priority, max_retries, timeout_seconds, run_at,
                            request_id, traceparent, queue, keys, actor, callback_url)
                    RETURNING {_COLUMNS}""",
                [n.id for n in news],
                [n.task_type for n in news],
                [_payload_json(n) for n in news],
                [n.priority for n in news],
                [n.max_retries for n in news],
                [n.timeout_seconds for n in news],
                [n.run_at for n in news],
                [n.request_id for n in news],
                [n.traceparent for n in news],
                [n.queue for n in news],
                [",".join(n.limit_keys) for n in news],  # a limit key never holds a comma
                [n.actor for n in news],
                [n.callback_url for n in news],
            )
        by_id = {row["id"]: _task(row) for row in rows}
        return [by_id[n.id] for n in news]

    async def insert_unique(self, new: NewTask) -> tuple[Task, bool, bool]:
        """Store a task with a unique_key: (task, created, duplicate). A key held by a waiting or
        running task, or within its window, gives that task back (duplicate) and stores nothing."""
        from taskcore.store.unique import insert_unique  # the unique-task rules live there

        async with self._conn() as conn:
            return await insert_unique(conn, new)

    async def insert_batch(self, news: Sequence[NewTask]) -> list[Inserted]:
        """``insert_many`` for a batch in which some tasks have a unique_key: one transaction, the
        others in one statement, each unique one after them in request order (a later item with the
        key of an earlier one is its duplicate)."""
        from taskcore.store.unique import insert_unique

        plain = [n for n in news if n.unique_key is None]
        async with self._conn() as conn, conn.transaction():
            by_id = {i.id: i for i in await _insert_many_on(conn, plain)}
            for new in news:
                if new.unique_key is not None:
                    task, _, duplicate = await insert_unique(conn, new)
                    task_id = UUID(bytes=task.id.bytes)  # a plain UUID: the batch answer is encoded by orjson
                    by_id[new.id] = Inserted(
                        task_id,
                        task.status,
                        task.priority,
                        task.run_at,
                        task.created_at,
                        task.queue,
                        task.admitted,
                        task_id if duplicate else None,
                    )
        return [by_id[n.id] for n in news]

    async def get(self, task_id: UUID) -> Task:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {_READ_COLUMNS} FROM tasks WHERE id = $1", task_id)
        if row is None:
            raise TaskNotFound(task_id)
        return _task(row)

    async def list_page(self, filters: ListFilter, *, limit: int, cursor: str | None = None) -> Page:
        """Newest first, keyset-paginated on (created_at, id)."""
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        conditions = filter_conditions(filters, arg)
        if cursor is not None:
            created, last_id = decode_cursor(cursor)
            conditions.append(f"(created_at, id) < ({arg(created)}, {arg(last_id)})")
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT {_READ_COLUMNS} FROM tasks {where} ORDER BY created_at DESC, id DESC LIMIT {arg(limit + 1)}"
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *args)
        items = [_task(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1]) if len(rows) > limit else None)

    async def queue_stats(self, *, worker_seen_within: timedelta) -> QueueStats:
        async with self._conn() as conn:
            depth_rows = await conn.fetch(
                f"SELECT status, count(*) AS n FROM tasks WHERE status IN {st.UNFINISHED} GROUP BY status"
            )
            due = await conn.fetchrow(
                f"""SELECT count(*) AS n,
                          EXTRACT(EPOCH FROM clock_timestamp() - min(run_at))::float8 AS oldest
                     FROM tasks WHERE status IN {st.WAITING} AND run_at <= clock_timestamp()"""
            )
            workers = await conn.fetchval(
                "SELECT count(*) FROM workers WHERE last_seen_at > clock_timestamp() - $1::interval",
                worker_seen_within,
            )
        depth = {s: 0 for s in TaskStatus if not s.terminal}
        depth.update({TaskStatus(r["status"]): r["n"] for r in depth_rows})
        return QueueStats(depth=depth, due=due["n"], oldest_due_age_seconds=due["oldest"], workers=workers)

    # -- user actions ---------------------------------------------------------------------

    async def cancel(self, task_id: UUID, *, actor: str | None = None) -> Task:
        """Waiting → cancelled at once; running → cancel requested; terminal → InvalidTransition."""
        async with self._conn() as conn, conn.transaction():
            found = await conn.fetchrow("SELECT status, has_children FROM tasks WHERE id = $1 FOR UPDATE", task_id)
            if found is None:
                raise TaskNotFound(task_id)
            status = found["status"]
            if TaskStatus(status).terminal:
                raise InvalidTransition(task_id, status, "cancel")
            row = await conn.fetchrow(
                f"UPDATE tasks SET {CANCEL_SET}, actor = $2 WHERE id = $1 RETURNING {_READ_COLUMNS}",
                task_id,
                actor,
            )
            if found["has_children"] and row["status"] == TaskStatus.CANCELLED:
                await deps.cancel_descendants(conn, [task_id])
        return _task(row)

    async def retry(self, task_id: UUID, *, actor: str | None = None) -> Task:
        """Failed or cancelled → queued with a fresh attempt budget (blocked while a parent has not
        succeeded; refused while one failed or was cancelled). Its descendants that were cancelled
        because it failed wait for it again."""
        async with self._conn() as conn, conn.transaction():
            found = await conn.fetchrow(
                "SELECT status, depends_on <> '{}' AS has_parents, has_children FROM tasks WHERE id = $1 FOR UPDATE",
                task_id,
            )
            if found is None:
                raise TaskNotFound(task_id)
            status = found["status"]
            if TaskStatus(status) not in RETRYABLE_STATES:
                raise InvalidTransition(task_id, status, "retry")
            waiting = 0
            if found["has_parents"]:
                waiting, ended = await deps.upstream(conn, task_id)
                if ended is not None:
                    why = f"waiting on upstream task {ended[0]}, which is {ended[1]}"
                    raise InvalidTransition(task_id, why, "retry")
            try:
                row = await self._requeue(conn, task_id, waiting, actor)
            except asyncpg.UniqueViolationError as exc:  # its unique_key is held by another waiting task
                raise InvalidTransition(task_id, status, "retry (its unique_key is held by another task)") from exc
            if found["has_children"]:
                await deps.rearm_descendants(conn, task_id)
        return _task(row)

    async def _requeue(
        self, conn: asyncpg.Connection, task_id: UUID, waiting: int = 0, actor: str | None = None
    ) -> asyncpg.Record:
        """``RETRY_SET`` (back to queued with a fresh attempt budget), but blocked instead while
        ``waiting`` parents have not succeeded (a bulk retry uses RETRY_SET: see store/bulk.py)."""
        row: asyncpg.Record = await conn.fetchrow(
            f"""UPDATE tasks SET {_RETRY_RESET},
                    status = CASE WHEN $2 > 0 THEN {st.BLOCKED} ELSE {st.QUEUED} END,
                    waiting_on = $2, admitted = $2 = 0 AND {_UNGATED}, actor = $3
                WHERE id = $1 RETURNING {_READ_COLUMNS}""",
            task_id,
            waiting,
            actor,
        )
        return row

    # -- worker transitions -----------------------------------------------------------------

    async def claim(self, task_id: UUID, *, worker_id: str, lease_seconds: float) -> Task | None:
        """Waiting and due → running (attempt + 1). None: cancelled, already claimed, or not due."""
        claimed = await self.claim_many([task_id], worker_id=worker_id, lease_seconds=lease_seconds)
        return claimed.get(task_id)

    async def claim_many(self, task_ids: Sequence[UUID], *, worker_id: str, lease_seconds: float) -> dict[UUID, Task]:
        """``claim`` for many tasks in one statement (one commit): each row keeps its own guard,
        so the tasks that are missing from the result were not claimable (cancelled, already
        claimed or not due) and nothing was written for them.

        ``status || ''`` keeps the guard out of the planner's reach: with statistics taken
        before a burst (a fresh table, a backlog that grew fast), PostgreSQL otherwise scans
        the whole waiting-tasks index for every batch instead of looking the ids up by key."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"""UPDATE tasks SET status = {st.RUNNING}, attempt = attempt + 1,
                        started_at = clock_timestamp(), updated_at = clock_timestamp(),
                        lease_expires_at = clock_timestamp() + make_interval(secs => $3), worker_id = $2,
                        actor = 'worker:' || $2
                    WHERE id = ANY($1::uuid[]) AND (status || '') IN {st.CLAIMABLE} AND admitted
                      AND run_at <= clock_timestamp() + interval '1 second'
                    RETURNING {_COLUMNS}""",
                list(task_ids),
                worker_id,
                lease_seconds,
            )
        return {row["id"]: _task(row) for row in rows}

    async def _finish(
        self, sql: str, task_id: UUID, attempt: int, *args: Any, only_if: str = "true", ends: bool = False
    ) -> asyncpg.Record | None:
        """One guarded transition of a running task. ``ends``: it ends the task for good, so its
        blocked descendants are cancelled in the same transaction."""
        async with self._conn() as conn:
            if not ends:
                return await self._finish_on(conn, sql, task_id, attempt, *args, only_if=only_if)
            async with conn.transaction():
                row = await self._finish_on(conn, sql, task_id, attempt, *args, only_if=only_if)
                if row is not None and row["has_children"]:
                    await deps.cancel_descendants(conn, [task_id])
        return row

    @staticmethod
    async def _finish_on(
        conn: asyncpg.Connection, sql: str, task_id: UUID, attempt: int, *args: Any, only_if: str
    ) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await conn.fetchrow(
            f"""UPDATE tasks SET updated_at = clock_timestamp(), lease_expires_at = NULL, {sql}
                WHERE id = $1 AND status = {st.RUNNING} AND attempt = $2 AND {only_if}
                RETURNING id, priority, run_at, queue, admitted, has_children""",
            task_id,
            attempt,
            *args,
        )
        return row

    async def mark_succeeded(self, task_id: UUID, attempt: int, result: Any) -> bool:
        done = await self.mark_succeeded_many([Success(task_id, attempt, orjson.dumps(result).decode())])
        return task_id in done

    async def mark_succeeded_many(self, successes: Sequence[Success]) -> set[UUID]:
        return (await self.succeed_many(successes)).recorded

    async def succeed_many(self, successes: Sequence[Success]) -> Succeeded:
        """Running → succeeded for many tasks in one statement; each row is guarded by its own
        status and attempt, and the ids recorded are returned (a late or duplicate outcome is
        left out and changes nothing). In the same transaction, the children whose last parent
        this was move blocked → queued (``unblocked``: the caller enqueues the admitted ones).
        The unblocking is a second statement so that it sees an edge committed by a dependent
        submit that held a parent's lock while this one waited."""
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""UPDATE tasks AS t SET status = {st.SUCCEEDED}, result = s.result::jsonb, error = NULL,
                        finished_at = clock_timestamp(), updated_at = clock_timestamp(), lease_expires_at = NULL,
                        actor = 'worker:' || t.worker_id
                    FROM unnest($1::uuid[], $2::int[], $3::text[]) AS s(id, attempt, result)
                    WHERE t.id = s.id AND t.status = {st.RUNNING} AND t.attempt = s.attempt
                    RETURNING t.id, t.has_children""",
                [s.task_id for s in successes],
                [s.attempt for s in successes],
                [s.result_json for s in successes],
            )
            parents = [row["id"] for row in rows if row["has_children"]]
            unblocked = await deps.unblock_children(conn, parents) if parents else []
        return Succeeded({row["id"] for row in rows}, unblocked)

    async def mark_failed(self, task_id: UUID, attempt: int, error: dict[str, Any]) -> bool:
        row = await self._finish(
            f"status = {st.FAILED}, error = $3, finished_at = clock_timestamp(), {_BY_WORKER}",
            task_id,
            attempt,
            error,
            ends=True,
        )
        return row is not None

    async def mark_retry(self, task_id: UUID, attempt: int, error: dict[str, Any], delay: float) -> DueTask | None:
        """Running → scheduled after ``delay`` seconds, keeping the error of this attempt."""
        row = await self._finish(
            f"status = {st.SCHEDULED}, error = $3, worker_id = NULL, {_BY_WORKER}, "
            f"run_at = clock_timestamp() + make_interval(secs => $4), admitted = {_UNGATED}",
            task_id,
            attempt,
            error,
            delay,
        )
        return (
            None if row is None else DueTask(row["id"], row["priority"], row["run_at"], row["queue"], row["admitted"])
        )

    async def mark_cancelled(self, task_id: UUID, attempt: int) -> bool:
        """Running with a cancel request → cancelled; False when no cancel was requested."""
        row = await self._finish(
            f"status = {st.CANCELLED}, finished_at = clock_timestamp(), worker_id = NULL, "
            f"{_BY_WORKER} || {_CANCEL_NOTE}",
            task_id,
            attempt,
            only_if="cancel_requested",
            ends=True,
        )
        return row is not None

    async def release(self, task_id: UUID, attempt: int) -> bool:
        """Running → queued, the attempt not counted: the worker is shutting down before it ran out."""
        row = await self._finish(
            f"status = {st.QUEUED}, attempt = attempt - 1, started_at = NULL, worker_id = NULL, "
            f"{_BY_WORKER} || {_note(reason='released by the worker at shutdown')}",
            task_id,
            attempt,
        )
        return row is not None

    async def renew_leases(self, task_ids: Sequence[UUID], *, worker_id: str, lease_seconds: float) -> set[UUID]:
        """Extend the leases of a worker's running tasks; return those whose cancel was requested."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"""UPDATE tasks SET lease_expires_at = clock_timestamp() + make_interval(secs => $3)
                   WHERE id = ANY($1::uuid[]) AND status = {st.RUNNING} AND worker_id = $2
                   RETURNING id, cancel_requested""",
                list(task_ids),
                worker_id,
                lease_seconds,
            )
        return {r["id"] for r in rows if r["cancel_requested"]}

    # -- reconciler ---------------------------------------------------------------------------

    async def waiting_batch(self, *, after: UUID | None, limit: int, settled_for: timedelta) -> list[DueTask]:
        """Waiting tasks in id order (a rotating scan), skipping ones changed within ``settled_for``."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"""SELECT id, priority, run_at, queue FROM tasks
                    WHERE status IN {st.WAITING} AND id > $1 AND updated_at < clock_timestamp() - $2::interval
                      AND admitted
                    ORDER BY id LIMIT $3""",
                after or UUID(int=0),
                settled_for,
                limit,
            )
        return [DueTask(r["id"], r["priority"], r["run_at"], r["queue"]) for r in rows]

    async def recover_expired(self, *, limit: int, error: dict[str, Any]) -> list[Recovered]:
        """Running tasks whose lease expired (their worker died) → scheduled now, failed, or cancelled
        (with their blocked descendants, in the same transaction)."""
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""UPDATE tasks SET
                        status = CASE WHEN cancel_requested THEN {st.CANCELLED}
                                      WHEN attempt <= max_retries THEN {st.SCHEDULED} ELSE {st.FAILED} END,
                        finished_at = CASE WHEN cancel_requested OR attempt > max_retries
                                           THEN clock_timestamp() END,
                        run_at = clock_timestamp(), updated_at = clock_timestamp(),
                        lease_expires_at = NULL, worker_id = NULL, error = $2, admitted = {_UNGATED},
                        actor = 'reconciler' || E'\\n' || jsonb_build_object('worker', worker_id)::text
                    WHERE id IN (SELECT id FROM tasks WHERE status = {st.RUNNING}
                                   AND lease_expires_at < clock_timestamp()
                                 ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                    RETURNING id, status, priority, run_at, queue, admitted, has_children""",
                limit,
                error,
            )
            ended = [r["id"] for r in rows if r["has_children"] and r["status"] != TaskStatus.SCHEDULED]
            if ended:
                await deps.cancel_descendants(conn, ended)
        return [
            Recovered(r["id"], TaskStatus(r["status"]), r["priority"], r["run_at"], r["queue"], r["admitted"])
            for r in rows
        ]

    async def purge_finished(self, *, older_than: timedelta, limit: int) -> int:
        """Delete up to ``limit`` tasks that finished more than ``older_than`` ago, the oldest first.

        The cutoff is ``now()`` (stable), not ``clock_timestamp()`` (volatile): only a stable one is an
        index condition, so the batch is read from tasks_finished_idx in order and stops at the cutoff.
        With the volatile one the planner could only filter, by a sequential scan of the heap from its
        start, past every younger row, batch after batch (docs/operations.md#retention-at-volume)."""
        async with self._conn() as conn:
            purged: int = await conn.fetchval(
                f"""WITH gone AS (DELETE FROM tasks WHERE id IN (
                        SELECT id FROM tasks WHERE status IN {st.TERMINAL}
                          AND finished_at < now() - $1::interval ORDER BY finished_at LIMIT $2) RETURNING id),
                    edges AS (DELETE FROM task_dependencies WHERE task_id IN (SELECT id FROM gone)),
                    history AS (DELETE FROM task_history WHERE task_id IN (SELECT id FROM gone)),
                    -- its callbacks' outbox rows (their attempts cascade)
                    sent AS (DELETE FROM deliveries WHERE task_id IN (SELECT id FROM gone)),
                    -- a workflow whose steps an earlier round purged (this round's are still seen)
                    flows AS (DELETE FROM workflows WHERE id IN (
                        SELECT w.id FROM workflows w WHERE w.created_at < now() - $1::interval
                           AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.workflow_id = w.id) LIMIT $2))
                    SELECT count(*) FROM gone""",
                older_than,
                limit,
            )
        return purged

    async def purge_unique_keys(self, *, limit: int) -> int:
        """Drop unique_key windows that have ended (an ended window is free to take anyway)."""
        async with self._conn() as conn:
            result: str = await conn.execute(
                """DELETE FROM unique_keys WHERE key IN (
                       SELECT key FROM unique_keys WHERE held_until < now() LIMIT $1)""",
                limit,
            )
        return int(result.split()[-1])

    @asynccontextmanager
    async def leadership(self, key: int) -> AsyncIterator[bool]:
        """Hold advisory lock ``key`` for the block if no other process holds it; yield whether we do.

        Transaction-scoped, on the leader pool: the lock goes when the block ends or the connection
        dies, and the block's own queries run on the main pool meanwhile."""
        async with translate_errors(), self._leader_pool.acquire() as conn, conn.transaction():
            yield bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key))

    # -- workers ------------------------------------------------------------------------------

    async def worker_seen(
        self, *, worker_id: str, hostname: str, pid: int, concurrency: int, queues: Sequence[str] = ("default",)
    ) -> None:
        async with self._conn() as conn:
            await conn.execute(
                """INSERT INTO workers (id, hostname, pid, concurrency, queues) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), queues = EXCLUDED.queues""",
                worker_id,
                hostname,
                pid,
                concurrency,
                list(queues),
            )

    async def worker_gone(self, worker_id: str) -> None:
        async with self._conn() as conn:
            await conn.execute("DELETE FROM workers WHERE id = $1", worker_id)

    async def forget_workers(self, *, unseen_for: timedelta) -> None:
        async with self._conn() as conn:
            await conn.execute("DELETE FROM workers WHERE last_seen_at < now() - $1::interval", unseen_for)


async def _insert_many_on(conn: asyncpg.Connection, news: Sequence[NewTask]) -> list[Inserted]:
    """``TaskRepository.insert_many`` on a given connection (it may be in a transaction)."""
    if not news:
        return []
    ids: list[UUID] = []
    types: list[str] = []
    payloads: list[str] = []
    priorities: list[int] = []
    retries: list[int] = []
    timeouts: list[int] = []
    run_ats: list[datetime | None] = []
    queues: list[str] = []
    keys: list[str] = []  # comma-joined: a limit key never holds a comma
    callbacks: list[str | None] = []
    for n in news:
        ids.append(n.id)
        types.append(n.task_type)
        payloads.append(_payload_json(n))
        priorities.append(n.priority)
        retries.append(n.max_retries)
        timeouts.append(n.timeout_seconds)
        run_ats.append(n.run_at)
        queues.append(n.queue)
        keys.append(",".join(n.limit_keys))
        callbacks.append(n.callback_url)
    row = await conn.fetchrow(
        f"""WITH now AS MATERIALIZED (SELECT clock_timestamp() AS ts),
                stored AS (
                    INSERT INTO tasks (id, task_type, payload, status, priority, max_retries,
                        timeout_seconds, run_at, request_id, traceparent, created_at, updated_at,
                        queue, limit_keys, admitted, batch_id, batch_counted, actor, callback_url)
                    SELECT n.id, n.task_type, n.payload::jsonb,
                        CASE WHEN n.run_at > now.ts THEN {st.SCHEDULED} ELSE {st.QUEUED} END,
                        n.priority, n.max_retries, n.timeout_seconds, COALESCE(n.run_at, now.ts),
                        $8, $9, now.ts, now.ts, n.queue, string_to_array(n.keys, ','),
                        n.keys = '' AND NOT EXISTS (SELECT 1 FROM pauses p
                            WHERE (p.kind = 'queue' AND p.name = n.queue)
                               OR (p.kind = 'task_type' AND p.name = n.task_type)), $12::uuid, $13::bool,
                        $14,
                        n.callback_url
                    FROM now, unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::int[],
                                $7::timestamptz[], $10::text[], $11::text[], $15::text[])
                        AS n(id, task_type, payload, priority, max_retries, timeout_seconds, run_at, queue, keys,
                             callback_url)
                    RETURNING 1),
                paused AS (SELECT kind, name FROM pauses)
                SELECT (SELECT ts FROM now) AS ts, (SELECT count(*) FROM stored) AS n,
                    (SELECT array_agg(kind || ':' || name) FROM paused) AS paused""",
        ids,
        types,
        payloads,
        priorities,
        retries,
        timeouts,
        run_ats,
        news[0].request_id,
        news[0].traceparent,
        queues,
        keys,
        news[0].batch_id,
        news[0].batch_counted,
        news[0].actor,
        callbacks,
    )
    if row["n"] != len(news):  # cannot happen (no ON CONFLICT): every row is stored or none
        raise RuntimeError(f"stored {row['n']} of {len(news)} tasks")
    now: datetime = row["ts"]
    queued, scheduled = TaskStatus.QUEUED, TaskStatus.SCHEDULED
    paused = set(row["paused"] or ())
    if not paused and not any(keys):  # the common case: every task admitted, in one queue or a few
        return [
            Inserted(n.id, queued, n.priority, now, now, n.queue)
            if n.run_at is None
            else Inserted(n.id, scheduled if n.run_at > now else queued, n.priority, n.run_at, now, n.queue)
            for n in news
        ]
    return [
        Inserted(
            n.id,
            queued if n.run_at is None or n.run_at <= now else scheduled,
            n.priority,
            n.run_at or now,
            now,
            n.queue,
            not n.limit_keys and f"queue:{n.queue}" not in paused and f"task_type:{n.task_type}" not in paused,
        )
        for n in news
    ]
