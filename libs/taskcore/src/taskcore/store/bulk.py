"""Bulk actions in PostgreSQL: match (count or snapshot), lease, and act chunk by chunk.

A bulk action snapshots the tasks its filter matches into ``bulk_action_items`` with the state
each was in (status, attempt, finished_at), in the transaction that creates it: ``matched`` is
what it will act on. A worker takes the action's lease and processes chunks; each chunk, in one
transaction, renews the lease, applies the user action's own transition (repository.RETRY_SET /
CANCEL_SET) to the chunk's tasks that are still in the state they were matched in, and records
every item's outcome and the counts. A crash rolls the chunk back whole, so no task is acted on
twice and none is forgotten; the next lease holder carries on from the items still pending.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import asyncpg
import orjson

from taskcore.domain import RETRYABLE_STATES, TERMINAL_STATES, TaskStatus
from taskcore.errors import TaskflowError
from taskcore.store import states as st
from taskcore.store._pool import translate_errors
from taskcore.store.repository import CANCEL_SET, RETRY_SET, ListFilter, filter_conditions

Action = Literal["retry", "cancel"]
ACTIONS: tuple[Action, ...] = ("retry", "cancel")
# The states each action applies to: a task matched in another state would only be skipped.
ELIGIBLE: dict[str, frozenset[TaskStatus]] = {
    "retry": RETRYABLE_STATES,
    "cancel": frozenset(TaskStatus) - TERMINAL_STATES,
}
_TRANSITION = {
    "retry": (RETRY_SET, st.sql_states(RETRYABLE_STATES, entering=TaskStatus.QUEUED)),
    "cancel": (CANCEL_SET, st.sql_states(ELIGIBLE["cancel"], entering=TaskStatus.CANCELLED)),
}
_COLUMNS = """id, action, filter, status, matched, done, succeeded, skipped, failed, actor,
    created_at, updated_at, finished_at"""


class BulkNotFound(TaskflowError):
    def __init__(self, bulk_id: UUID) -> None:
        super().__init__(f"bulk action {bulk_id} does not exist")
        self.bulk_id = bulk_id


@dataclass(frozen=True, slots=True)
class BulkAction:
    id: UUID
    action: str
    filter: dict[str, Any]
    status: str  # running | finished
    matched: int
    done: int
    succeeded: int
    skipped: int
    failed: int
    actor: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Acted:
    """A task a chunk moved, and what the queue needs to follow (enqueue, remove or abort its job)."""

    id: UUID
    status: TaskStatus
    priority: int
    run_at: datetime
    queue: str
    admitted: bool
    limited: bool  # under a limit key: its slot is free (cancel) or it waits for one (retry)


@dataclass(frozen=True, slots=True)
class Chunk:
    acted: list[Acted]
    skipped: int
    failed: int
    finished: bool


def eligible_filter(action: str, filters: ListFilter) -> ListFilter:
    """``filters`` restricted to the states ``action`` applies to (all of them when none is given)."""
    if filters.statuses:
        return filters
    return dataclasses.replace(filters, statuses=sorted(ELIGIBLE[action]))


def _bulk(row: asyncpg.Record) -> BulkAction:
    values = dict(row.items())
    values["filter"] = orjson.loads(values["filter"]) if isinstance(values["filter"], str) else values["filter"]
    return BulkAction(**values)


class BulkRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with translate_errors(), self._pool.acquire() as conn:
            yield conn

    async def count(self, action: str, filters: ListFilter) -> int:
        """How many tasks ``action`` over ``filters`` would act on now (a dry run)."""
        args: list[Any] = []
        where = self._where(eligible_filter(action, filters), args)
        async with self._conn() as conn:
            count: int = await conn.fetchval(f"SELECT count(*) FROM tasks {where}", *args)
        return count

    async def create(
        self, bulk_id: UUID, action: str, filters: ListFilter, *, filter_doc: dict[str, Any], actor: str | None
    ) -> BulkAction:
        """Store the action and the tasks it matches, together; one that matches none is finished at once."""
        args: list[Any] = [bulk_id]
        where = self._where(eligible_filter(action, filters), args)
        async with self._conn() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO bulk_actions (id, action, filter, actor) VALUES ($1, $2, $3::text::jsonb, $4)",
                bulk_id,
                action,
                orjson.dumps(filter_doc).decode(),
                actor,
            )
            row = await conn.fetchrow(
                f"""WITH matched AS (
                        INSERT INTO bulk_action_items (bulk_id, task_id, status, attempt, finished_at)
                        SELECT $1, tasks.id, tasks.status, tasks.attempt, tasks.finished_at FROM tasks {where}
                        RETURNING 1),
                    n AS (SELECT count(*)::int AS n FROM matched)
                    UPDATE bulk_actions SET matched = n.n,
                        status = CASE WHEN n.n = 0 THEN 'finished' ELSE 'running' END,
                        finished_at = CASE WHEN n.n = 0 THEN clock_timestamp() END
                    FROM n WHERE id = $1 RETURNING {_COLUMNS}""",
                *args,
            )
        return _bulk(row)

    @staticmethod
    def _where(filters: ListFilter, args: list[Any]) -> str:
        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        conditions = filter_conditions(filters, arg)
        return f"WHERE {' AND '.join(conditions)}" if conditions else ""

    async def get(self, bulk_id: UUID) -> BulkAction:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM bulk_actions WHERE id = $1", bulk_id)
        if row is None:
            raise BulkNotFound(bulk_id)
        return _bulk(row)

    async def claim(self, owner: str, *, lease_seconds: float) -> tuple[UUID, str] | None:
        """Take the lease of the oldest running action nobody holds (or whose holder stopped renewing)."""
        async with self._conn() as conn:
            row = await conn.fetchrow(
                """UPDATE bulk_actions SET lease_owner = $1,
                        lease_expires_at = clock_timestamp() + make_interval(secs => $2)
                    WHERE id = (SELECT id FROM bulk_actions WHERE status = 'running'
                                  AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp()
                                       OR lease_owner = $1)
                                ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                    RETURNING id, action""",
                owner,
                lease_seconds,
            )
        return None if row is None else (row["id"], row["action"])

    async def run_chunk(self, bulk_id: UUID, owner: str, *, limit: int, lease_seconds: float) -> Chunk | None:
        """Act on up to ``limit`` pending tasks, in one transaction; None when the lease is no longer ours."""
        async with self._conn() as conn, conn.transaction():
            action = await conn.fetchval(
                """UPDATE bulk_actions SET lease_expires_at = clock_timestamp() + make_interval(secs => $3)
                    WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING action""",
                bulk_id,
                owner,
                lease_seconds,
            )
            if action is None:
                return None
            rows = await conn.fetch(self._chunk_sql(action), bulk_id, limit)
            return await self._count(conn, bulk_id, rows)

    @staticmethod
    def _chunk_sql(action: str) -> str:
        transition, sources = _TRANSITION[action]
        # A task is acted on only in the state it was matched in (status, attempt, finish time); one
        # gone since (retention) is an error, one in another state is skipped.
        return f"""WITH picked AS (
                SELECT i.task_id, i.status, i.attempt, i.finished_at FROM bulk_action_items i
                 WHERE i.bulk_id = $1 AND i.outcome IS NULL ORDER BY i.task_id LIMIT $2 FOR UPDATE),
            acted AS (
                UPDATE tasks SET {transition}, actor = 'bulk:' || $1::text FROM picked p
                 WHERE tasks.id = p.task_id AND tasks.status = p.status AND tasks.attempt = p.attempt
                   AND tasks.finished_at IS NOT DISTINCT FROM p.finished_at AND tasks.status IN {sources}
                RETURNING tasks.id, tasks.status, tasks.priority, tasks.run_at, tasks.queue, tasks.admitted,
                          tasks.limit_keys <> '{{}}' AS limited),
            present AS (SELECT t.id FROM tasks t JOIN picked p ON t.id = p.task_id),
            marked AS (
                UPDATE bulk_action_items i SET outcome = CASE
                        WHEN i.task_id IN (SELECT id FROM acted) THEN 'succeeded'
                        WHEN i.task_id IN (SELECT id FROM present) THEN 'skipped' ELSE 'failed' END
                  FROM picked p WHERE i.bulk_id = $1 AND i.task_id = p.task_id
                RETURNING i.task_id, i.outcome)
            SELECT m.outcome, a.* FROM marked m LEFT JOIN acted a ON a.id = m.task_id"""

    @staticmethod
    async def _count(conn: asyncpg.Connection, bulk_id: UUID, rows: Sequence[asyncpg.Record]) -> Chunk:
        acted = [
            Acted(r["id"], TaskStatus(r["status"]), r["priority"], r["run_at"], r["queue"], r["admitted"], r["limited"])
            for r in rows
            if r["outcome"] == "succeeded"
        ]
        skipped = sum(1 for r in rows if r["outcome"] == "skipped")
        failed = len(rows) - len(acted) - skipped
        status = await conn.fetchval(
            """UPDATE bulk_actions SET done = done + $2, succeeded = succeeded + $3, skipped = skipped + $4,
                    failed = failed + $5, updated_at = clock_timestamp(),
                    status = CASE WHEN done + $2 >= matched THEN 'finished' ELSE status END,
                    finished_at = CASE WHEN done + $2 >= matched THEN clock_timestamp() END,
                    lease_owner = CASE WHEN done + $2 >= matched THEN NULL ELSE lease_owner END
                WHERE id = $1 RETURNING status""",
            bulk_id,
            len(rows),
            len(acted),
            skipped,
            failed,
        )
        return Chunk(acted, skipped, failed, status == "finished")

    async def purge_finished(self, *, older_than: timedelta, limit: int) -> int:
        """Forget finished bulk actions (and their items) past retention."""
        async with self._conn() as conn:
            result: str = await conn.execute(
                """DELETE FROM bulk_actions WHERE id IN (SELECT id FROM bulk_actions WHERE status = 'finished'
                     AND finished_at < clock_timestamp() - $1::interval LIMIT $2)""",
                older_than,
                limit,
            )
        return int(result.split()[-1])
