"""Dependencies between tasks in PostgreSQL: workflows, blocked steps, unblocking and cascades.

A task with parents is stored ``blocked`` with ``waiting_on`` = its parents that have not
succeeded. Every write that ends a parent runs, in the same transaction, the statement here that
follows from it: a success decrements its children's counters (the child whose counter reaches 0
moves to queued or scheduled, and is returned for the queue); a failure for good or a cancel
cancels every blocked descendant with error type ``UpstreamFailed`` naming it; a retry re-arms
the descendants it cancelled. The counter lives on the child's row, so two parents that finish at
once on two workers serialise on that row and exactly one of them unblocks it.

The functions taking a connection run inside the caller's transaction (taskcore.store.repository):
each is a fresh statement, so it sees an edge committed while the caller waited on a parent's lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from taskcore.domain import NewTask, Task, TaskStatus
from taskcore.errors import TaskValidationError, UpstreamFailed
from taskcore.store import states as st
from taskcore.store._pool import translate_errors

# The same test as repository._UNGATED, on the row being updated (no limit key, nothing paused).
_UNGATED = """(tasks.limit_keys = '{}' AND NOT EXISTS (SELECT 1 FROM pauses p
    WHERE (p.kind = 'queue' AND p.name = tasks.queue) OR (p.kind = 'task_type' AND p.name = tasks.task_type)))"""

_TASK_COLUMNS = """id, task_type, payload, status, priority, attempt, max_retries, timeout_seconds,
    created_at, updated_at, run_at, started_at, finished_at, cancel_requested, result, error,
    idempotency_key, request_id, traceparent, queue, limit_keys, admitted, schedule_id, scheduled_for, unique_key,
    workflow_id, step_ref AS ref, depends_on, callback_url"""  # repository._COLUMNS (which imports this module)


@dataclass(frozen=True, slots=True)
class Unblocked:
    """A child whose last parent succeeded: where it went (queued or scheduled) and what the queue needs."""

    id: UUID
    status: TaskStatus
    priority: int
    run_at: datetime
    queue: str
    admitted: bool


@dataclass(frozen=True, slots=True)
class NewStep:
    """One step of a workflow to store: its task and the refs of its parents."""

    task: NewTask
    ref: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredStep:
    ref: str
    id: UUID
    status: TaskStatus
    priority: int
    run_at: datetime
    queue: str
    admitted: bool


@dataclass(frozen=True, slots=True)
class Workflow:
    id: UUID
    name: str
    created_at: datetime
    steps: list[Task]
    counts: dict[TaskStatus, int]

    @property
    def status(self) -> str:
        return workflow_status(self.counts)


def workflow_status(counts: dict[TaskStatus, int]) -> str:
    """running while any step has not ended; then succeeded, failed (any step failed) or cancelled."""
    if any(n for s, n in counts.items() if not s.terminal):
        return "running"
    if counts.get(TaskStatus.FAILED):
        return "failed"
    if counts.get(TaskStatus.CANCELLED):
        return "cancelled"
    return "succeeded"


def _task(row: asyncpg.Record) -> Task:
    values = dict(row.items())
    values["status"] = TaskStatus(values["status"])
    values["limit_keys"] = tuple(values["limit_keys"])
    values["depends_on"] = tuple(values["depends_on"])
    return Task(**values)


# -- statements run inside the transaction of a transition -----------------------------------------


async def unblock_children(conn: asyncpg.Connection, parents: Sequence[UUID]) -> list[Unblocked]:
    """``parents`` just succeeded: take each off its blocked children's counters; the children
    that reach 0 are due (queued, or scheduled while their own run_at is ahead) and admitted as a
    fresh insert would be. Children are locked in id order, so concurrent finishes cannot deadlock."""
    rows = await conn.fetch(
        f"""WITH counts AS (
                SELECT task_id, count(*)::int AS n, min(parent_id::text) AS parent FROM task_dependencies
                 WHERE parent_id = ANY($1::uuid[]) GROUP BY task_id),
            locked AS (
                SELECT t.id FROM tasks t JOIN counts c ON c.task_id = t.id
                 WHERE t.status = {st.BLOCKED} ORDER BY t.id FOR UPDATE OF t)
            UPDATE tasks SET waiting_on = tasks.waiting_on - c.n, updated_at = clock_timestamp(),
                status = CASE WHEN tasks.waiting_on > c.n THEN tasks.status
                              WHEN tasks.run_at > clock_timestamp() THEN {st.UNBLOCKED_SCHEDULED}
                              ELSE {st.UNBLOCKED_QUEUED} END,
                run_at = CASE WHEN tasks.waiting_on > c.n THEN tasks.run_at
                              ELSE GREATEST(tasks.run_at, clock_timestamp()) END,
                admitted = tasks.waiting_on <= c.n AND {_UNGATED},
                actor = 'workflow' || E'\\n' || jsonb_build_object('parent', c.parent)::text
              FROM counts c
             WHERE tasks.id = c.task_id AND tasks.id IN (SELECT id FROM locked) AND tasks.status = {st.BLOCKED}
            RETURNING tasks.id, tasks.status, tasks.priority, tasks.run_at, tasks.queue, tasks.admitted""",
        list(parents),
    )
    return [
        Unblocked(r["id"], TaskStatus(r["status"]), r["priority"], r["run_at"], r["queue"], r["admitted"])
        for r in rows
        if r["status"] != TaskStatus.BLOCKED
    ]


async def cancel_descendants(conn: asyncpg.Connection, roots: Sequence[UUID]) -> list[UUID]:
    """``roots`` failed for good or were cancelled: cancel every blocked task downstream of them
    (transitively) with error type UpstreamFailed naming the root it waited on."""
    rows = await conn.fetch(
        f"""WITH RECURSIVE down AS (
                SELECT task_id, parent_id AS root FROM task_dependencies WHERE parent_id = ANY($1::uuid[])
                UNION
                SELECT d.task_id, down.root FROM down JOIN task_dependencies d ON d.parent_id = down.task_id),
            victims AS (
                SELECT DISTINCT ON (down.task_id) down.task_id, down.root, r.status AS root_status,
                       r.step_ref AS root_ref
                  FROM down JOIN tasks r ON r.id = down.root ORDER BY down.task_id, down.root),
            locked AS (
                SELECT t.id FROM tasks t JOIN victims v ON v.task_id = t.id
                 WHERE t.status = {st.BLOCKED} ORDER BY t.id FOR UPDATE OF t)
            UPDATE tasks SET status = {st.CANCELLED}, finished_at = clock_timestamp(),
                updated_at = clock_timestamp(), admitted = false, actor = 'workflow',
                error = jsonb_build_object(
                    'type', $2::text,
                    'message', 'upstream task ' || v.root || COALESCE(' (' || v.root_ref || ')', '')
                               || ' ' || v.root_status,
                    'upstream_task_id', v.root::text, 'upstream_ref', v.root_ref)
              FROM victims v
             WHERE tasks.id = v.task_id AND tasks.id IN (SELECT id FROM locked) AND tasks.status = {st.BLOCKED}
            RETURNING tasks.id""",
        list(roots),
        UpstreamFailed.error_type(),
    )
    return [r["id"] for r in rows]


async def rearm_descendants(conn: asyncpg.Connection, task_id: UUID) -> list[UUID]:
    """``task_id`` was retried: its descendants cancelled as UpstreamFailed wait again (blocked,
    counting the parents that have not succeeded). One that still has another parent failed or
    cancelled is cancelled again at once, naming that parent."""
    rows = await conn.fetch(
        f"""WITH RECURSIVE down AS (
                SELECT d.task_id FROM task_dependencies d JOIN tasks t ON t.id = d.task_id
                 WHERE d.parent_id = $1 AND t.status = {st.CANCELLED} AND t.error->>'type' = $2
                UNION
                SELECT d.task_id FROM down JOIN task_dependencies d ON d.parent_id = down.task_id
                  JOIN tasks t ON t.id = d.task_id
                 WHERE t.status = {st.CANCELLED} AND t.error->>'type' = $2)
            UPDATE tasks SET status = {st.BLOCKED}, attempt = 0, run_at = clock_timestamp(),
                updated_at = clock_timestamp(), started_at = NULL, finished_at = NULL, result = NULL,
                error = NULL, cancel_requested = false, lease_expires_at = NULL, worker_id = NULL,
                admitted = false, actor = 'workflow' || E'\\n' || jsonb_build_object('parent', $1::text)::text,
                waiting_on = (SELECT count(*) FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
                               WHERE d.task_id = tasks.id AND p.status <> {st.SUCCEEDED})
             WHERE tasks.id IN (SELECT task_id FROM down) AND tasks.status = {st.CANCELLED}
            RETURNING tasks.id""",
        task_id,
        UpstreamFailed.error_type(),
    )
    rearmed = [r["id"] for r in rows]
    if rearmed:
        still_failed = await conn.fetch(
            f"""SELECT DISTINCT d.parent_id FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
                 WHERE d.task_id = ANY($1::uuid[]) AND p.id <> $2
                   AND p.status IN ({st.FAILED}, {st.CANCELLED})""",
            rearmed,
            task_id,
        )
        if still_failed:
            await cancel_descendants(conn, [r["parent_id"] for r in still_failed])
    return rearmed


async def upstream(conn: asyncpg.Connection, task_id: UUID) -> tuple[int, tuple[UUID, str] | None]:
    """The parents of ``task_id`` that have not succeeded, and one that failed or was cancelled."""
    rows = await conn.fetch(
        f"""SELECT p.id, p.status FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
             WHERE d.task_id = $1 AND p.status <> {st.SUCCEEDED} ORDER BY p.id""",
        task_id,
    )
    failed = next(((r["id"], r["status"]) for r in rows if TaskStatus(r["status"]).terminal), None)
    return len(rows), failed


def upstream_error(parent: UUID, status: str, ref: str | None = None) -> dict[str, Any]:
    named = f"upstream task {parent}" + (f" ({ref})" if ref else "")
    return {
        "type": UpstreamFailed.error_type(),
        "message": f"{named} {status}",
        "upstream_task_id": str(parent),
        "upstream_ref": ref,
    }


# -- the repository ---------------------------------------------------------------------------------


class WorkflowRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with translate_errors(), self._pool.acquire() as conn:
            yield conn

    async def insert_workflow(self, workflow_id: UUID, name: str, steps: Sequence[NewStep]) -> list[StoredStep]:
        """The workflow row, every step and every edge in one transaction: all stored or none."""
        ids = {s.ref: s.task.id for s in steps}
        parents_of_any = {p for s in steps for p in s.depends_on}
        rows_in = [
            (
                n.id,
                n.task_type,
                n.payload_json or orjson.dumps(n.payload).decode(),
                n.priority,
                n.max_retries,
                n.timeout_seconds,
                n.run_at,
                n.queue,
                ",".join(n.limit_keys),
                step.ref,
                ",".join(str(ids[p]) for p in step.depends_on),
                step.ref in parents_of_any,
                n.callback_url,
            )
            for step in steps
            for n in (step.task,)
        ]
        columns = [list(c) for c in zip(*rows_in, strict=True)]
        children = [ids[s.ref] for s in steps for _ in s.depends_on]
        parents = [ids[p] for s in steps for p in s.depends_on]
        first = steps[0].task
        async with self._conn() as conn, conn.transaction():
            await conn.execute("INSERT INTO workflows (id, name) VALUES ($1, $2)", workflow_id, name)
            rows = await conn.fetch(
                f"""WITH now AS MATERIALIZED (SELECT clock_timestamp() AS ts)
                    INSERT INTO tasks (id, task_type, payload, status, priority, max_retries, timeout_seconds,
                        run_at, request_id, traceparent, created_at, updated_at, queue, limit_keys, admitted,
                        workflow_id, step_ref, depends_on, waiting_on, has_children, actor, callback_url)
                    SELECT n.id, n.task_type, n.payload::jsonb,
                        CASE WHEN n.deps <> '' THEN {st.BLOCKED}
                             WHEN n.run_at > now.ts THEN {st.SCHEDULED} ELSE {st.QUEUED} END,
                        n.priority, n.max_retries, n.timeout_seconds, COALESCE(n.run_at, now.ts),
                        $8, $9, now.ts, now.ts, n.queue, string_to_array(n.keys, ','),
                        n.deps = '' AND n.keys = '' AND NOT EXISTS (SELECT 1 FROM pauses p
                            WHERE (p.kind = 'queue' AND p.name = n.queue)
                               OR (p.kind = 'task_type' AND p.name = n.task_type)),
                        $12, n.ref, string_to_array(n.deps, ',')::uuid[],
                        cardinality(string_to_array(n.deps, ',')), n.has_children, $17, n.callback_url
                    FROM now, unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::int[],
                                $7::timestamptz[], $10::text[], $11::text[], $13::text[], $14::text[], $15::bool[],
                                $16::text[])
                        AS n(id, task_type, payload, priority, max_retries, timeout_seconds, run_at, queue, keys,
                             ref, deps, has_children, callback_url)
                    RETURNING id, step_ref, status, priority, run_at, queue, admitted""",
                *columns[:7],
                first.request_id,
                first.traceparent,
                *columns[7:9],
                workflow_id,
                *columns[9:],
                first.actor,
            )
            if children:
                await conn.execute(
                    "INSERT INTO task_dependencies (task_id, parent_id) SELECT * FROM unnest($1::uuid[], $2::uuid[])",
                    children,
                    parents,
                )
        by_ref = {
            r["step_ref"]: StoredStep(
                r["step_ref"], r["id"], TaskStatus(r["status"]), r["priority"], r["run_at"], r["queue"], r["admitted"]
            )
            for r in rows
        }
        return [by_ref[s.ref] for s in steps]

    async def insert_dependent(self, new: NewTask, parents: Sequence[UUID]) -> Task | None:
        """Store a task that waits for ``parents`` (task ids); None when its Idempotency-Key is
        already used (the caller looks the original up). The parents are locked first, so each one
        either succeeded before (not counted) or finishes after this commits (and sees the edge)."""
        async with self._conn() as conn, conn.transaction():
            found = await conn.fetch(
                "UPDATE tasks SET has_children = true WHERE id = ANY($1::uuid[]) RETURNING id, status, step_ref",
                list(parents),
            )
            known = {r["id"]: r for r in found}
            missing = [i for i, p in enumerate(parents) if p not in known]
            if missing:
                raise TaskValidationError(
                    f"depends_on names {len(missing)} unknown task(s)",
                    [
                        {"field": f"depends_on.{i}", "message": f"no task {parents[i]}", "type": "unknown_task"}
                        for i in missing
                    ],
                )
            pending = [r for r in found if r["status"] != TaskStatus.SUCCEEDED]
            ended = next((r for r in pending if TaskStatus(r["status"]).terminal), None)
            row = await conn.fetchrow(
                f"""WITH now AS (SELECT clock_timestamp() AS ts)
                    INSERT INTO tasks (id, task_type, payload, status, priority, max_retries,
                        timeout_seconds, idempotency_key, request_hash, run_at, request_id, traceparent,
                        created_at, updated_at, queue, limit_keys, admitted, depends_on, waiting_on,
                        error, finished_at, actor, callback_url)
                    SELECT $1, $2, $3::text::jsonb,
                        CASE WHEN $15::jsonb IS NOT NULL THEN {st.CANCELLED}
                             WHEN $14 > 0 THEN {st.BLOCKED}
                             WHEN $9::timestamptz > now.ts THEN {st.SCHEDULED} ELSE {st.QUEUED} END,
                        $4, $5, $6, $7, $8, COALESCE($9::timestamptz, now.ts), $10, $11, now.ts, now.ts,
                        $12, $13::text[], $14 = 0 AND cardinality($13::text[]) = 0 AND NOT EXISTS (SELECT 1
                            FROM pauses p WHERE (p.kind = 'queue' AND p.name = $12)
                                             OR (p.kind = 'task_type' AND p.name = $2)),
                        $16::uuid[], $14, $15::jsonb, CASE WHEN $15::jsonb IS NOT NULL THEN now.ts END, $17, $18
                    FROM now
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING {_TASK_COLUMNS}""",
                new.id,
                new.task_type,
                new.payload_json or orjson.dumps(new.payload).decode(),
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
                len(pending),
                None if ended is None else upstream_error(ended["id"], ended["status"], ended["step_ref"]),
                list(parents),
                new.actor,
                new.callback_url,
            )
            if row is None:
                return None
            await conn.execute(
                "INSERT INTO task_dependencies (task_id, parent_id) SELECT $1, unnest($2::uuid[])",
                new.id,
                list(parents),
            )
        return _task(row)

    async def parent_results(self, parents: Sequence[UUID]) -> dict[str, Any]:
        """The results of a task's parents, by step ref (a workflow step's parents) or by task id."""
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT id, step_ref, result FROM tasks WHERE id = ANY($1::uuid[])", list(parents))
        return {r["step_ref"] or str(r["id"]): r["result"] for r in rows}

    async def get(self, workflow_id: UUID) -> Workflow | None:
        async with self._conn() as conn:
            head = await conn.fetchrow("SELECT id, name, created_at FROM workflows WHERE id = $1", workflow_id)
            if head is None:
                return None
            rows = await conn.fetch(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE workflow_id = $1 ORDER BY created_at, step_ref",
                workflow_id,
            )
        steps = [_task(r) for r in rows]
        counts = {s: 0 for s in TaskStatus}
        for step in steps:
            counts[step.status] += 1
        return Workflow(head["id"], head["name"], head["created_at"], steps, counts)

    async def page(self, *, limit: int, before: tuple[datetime, UUID] | None = None) -> list[Workflow]:
        """Newest first, with the count of steps by status (no steps listed)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                """SELECT w.id, w.name, w.created_at, c.counts FROM workflows w
                     LEFT JOIN LATERAL (SELECT jsonb_object_agg(status, n) AS counts FROM (
                         SELECT status, count(*) AS n FROM tasks WHERE workflow_id = w.id GROUP BY status) s) c
                       ON true
                    WHERE $2::timestamptz IS NULL OR (w.created_at, w.id) < ($2, $3)
                    ORDER BY w.created_at DESC, w.id DESC LIMIT $1""",
                limit,
                None if before is None else before[0],
                None if before is None else before[1],
            )
        out = []
        for r in rows:
            counts = {s: 0 for s in TaskStatus}
            for status, n in (r["counts"] or {}).items():  # the pool decodes jsonb
                counts[TaskStatus(status)] = n
            out.append(Workflow(r["id"], r["name"], r["created_at"], [], counts))
        return out

    async def cancel(self, workflow_id: UUID, *, actor: str | None = None) -> list[Task] | None:
        """Cancel every step that has not ended (a running one: cancel requested, its worker stops
        it); None when there is no such workflow. Returns the steps it changed."""
        async with self._conn() as conn, conn.transaction():
            if await conn.fetchval("SELECT 1 FROM workflows WHERE id = $1", workflow_id) is None:
                return None
            rows = await conn.fetch(
                f"""UPDATE tasks SET cancel_requested = true, updated_at = clock_timestamp(),
                        status = CASE WHEN status = {st.RUNNING} THEN status ELSE {st.CANCELLED} END,
                        finished_at = CASE WHEN status = {st.RUNNING} THEN NULL ELSE clock_timestamp() END,
                        actor = $2
                    WHERE id IN (SELECT id FROM tasks WHERE workflow_id = $1 AND status IN {st.UNFINISHED}
                                  ORDER BY id FOR UPDATE)
                    RETURNING {_TASK_COLUMNS}""",
                workflow_id,
                actor,
            )
        return [_task(r) for r in rows]
