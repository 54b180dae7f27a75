"""A task's history: one row per transition, written by the triggers of migration 0012.

Nothing here writes: every statement that changes a task's status sets ``tasks.actor`` and the
statement-level triggers copy (from, to, attempt, actor, detail) into ``task_history`` in the
same transaction, so a history is exactly the committed transitions, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from taskcore.domain import TaskStatus
from taskcore.errors import TaskNotFound
from taskcore.store._pool import translate_errors


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a task's status: ``from_status`` None for its creation."""

    at: datetime
    from_status: TaskStatus | None
    to_status: TaskStatus
    attempt: int
    actor: str | None
    detail: dict[str, Any] | None


async def task_history(pool: asyncpg.Pool, task_id: UUID) -> list[Transition]:
    """The transitions of ``task_id`` in the order they were made; TaskNotFound if there is no such task."""
    async with translate_errors(), pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT at, from_status, to_status, attempt, actor, detail FROM task_history
                WHERE task_id = $1 ORDER BY at""",
            task_id,
        )
        # A task always has its creation row; none: no such task (or one stored before migration 0012).
        if not rows and await conn.fetchval("SELECT 1 FROM tasks WHERE id = $1", task_id) is None:
            raise TaskNotFound(task_id)
    return [
        Transition(
            r["at"],
            None if r["from_status"] is None else TaskStatus(r["from_status"]),
            TaskStatus(r["to_status"]),
            r["attempt"],
            r["actor"],
            r["detail"],
        )
        for r in rows
    ]
