"""The progress write: one guarded UPDATE of the task's ``progress`` (taskcore/progress.py throttles)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from taskcore.store import states as st
from taskcore.store._pool import translate_errors


class ProgressStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write(self, task_id: UUID, attempt: int, progress_json: str) -> bool:
        """Store ``progress_json`` while the task runs ``attempt``; False when it no longer does.

        updated_at is left alone: progress is not a state change (the reconciler reads updated_at)."""
        async with translate_errors(), self._pool.acquire() as conn:
            result: str = await conn.execute(
                f"""UPDATE tasks SET progress = $3::text::jsonb
                    WHERE id = $1 AND status = {st.RUNNING} AND attempt = $2""",
                task_id,
                attempt,
                progress_json,
            )
        return result.endswith(" 1")
