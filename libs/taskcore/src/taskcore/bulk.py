"""Bulk retry and cancel: the API starts one (``BulkService``), any worker runs it (``BulkRunner``).

PostgreSQL decides (taskcore/store/bulk.py): the match is a snapshot taken with the action, and
each chunk's transitions commit with the items' outcomes. Redis follows after each commit, best
effort, exactly as after a single retry or cancel: a retried task's job is enqueued (the reconciler
enqueues any it missed), a cancelled one's job removed, a running one aborted (its worker's
heartbeat sees the cancel request anyway), and the admitter runs when slots were freed or taken.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import structlog

from taskcore.domain import TaskStatus
from taskcore.errors import DependencyUnavailable, TaskValidationError
from taskcore.flowservice import FlowService
from taskcore.queue import Enqueue, TaskQueue
from taskcore.settings import Settings
from taskcore.store.bulk import ACTIONS, ELIGIBLE, Acted, BulkAction, BulkRepository
from taskcore.store.repository import ListFilter

log = structlog.get_logger("taskflow.bulk")

PURGE_EVERY_STEPS = 100


def check_bulk(action: str, filters: ListFilter) -> None:
    """TaskValidationError naming the field when ``action`` cannot apply to what ``filters`` asks for."""
    if action not in ACTIONS:
        raise TaskValidationError(
            f"unknown bulk action {action!r}",
            [{"field": "action", "message": f"must be one of {', '.join(ACTIONS)}", "type": "enum"}],
        )
    wrong = sorted(s.value for s in filters.statuses if s not in ELIGIBLE[action])
    if wrong:
        allowed = ", ".join(sorted(s.value for s in ELIGIBLE[action]))
        raise TaskValidationError(
            f"{action} does not apply to {', '.join(wrong)} tasks",
            [{"field": "filter.status", "message": f"{action} applies to {allowed} tasks only", "type": "enum"}],
        )


class BulkService:
    def __init__(self, *, store: BulkRepository) -> None:
        self.store = store

    async def count(self, action: str, filters: ListFilter) -> int:
        check_bulk(action, filters)
        return await self.store.count(action, filters)

    async def start(
        self, action: str, filters: ListFilter, *, filter_doc: dict[str, Any], actor: str | None
    ) -> BulkAction:
        check_bulk(action, filters)
        return await self.store.create(uuid4(), action, filters, filter_doc=filter_doc, actor=actor)

    async def get(self, bulk_id: UUID) -> BulkAction:
        return await self.store.get(bulk_id)


class BulkRunner:
    """In each worker: takes the lease of a running bulk action and works through it chunk by chunk."""

    def __init__(self, *, store: BulkRepository, queue: TaskQueue, flow: FlowService, settings: Settings, owner: str):
        self.store = store
        self.queue = queue
        self.flow = flow
        self.settings = settings
        self.owner = owner
        self._steps = 0

    async def step(self) -> int:
        """Work on bulk actions for about a third of a lease; the number of tasks processed."""
        self._steps += 1
        if self._steps % PURGE_EVERY_STEPS == 1:  # a small table: now and then is enough
            await self.purge()
        lease = self.settings.lease_seconds
        budget_ends = time.monotonic() + lease / 3
        processed = 0
        while time.monotonic() < budget_ends:
            claimed = await self.store.claim(self.owner, lease_seconds=lease)
            if claimed is None:
                break
            bulk_id, action = claimed
            processed += await self._run(bulk_id, action, budget_ends)
        return processed

    async def _run(self, bulk_id: UUID, action: str, budget_ends: float) -> int:
        processed = 0
        while time.monotonic() < budget_ends:
            chunk = await self.store.run_chunk(
                bulk_id, self.owner, limit=self.settings.bulk_chunk_size, lease_seconds=self.settings.lease_seconds
            )
            if chunk is None:  # the lease went to another worker (we were too slow): it carries on
                break
            processed += len(chunk.acted) + chunk.skipped + chunk.failed
            await self._follow(action, chunk.acted)
            if chunk.finished:
                log.info("bulk action finished", bulk_id=str(bulk_id), action=action)
                break
            if self.settings.bulk_chunk_pause_seconds:
                await asyncio.sleep(self.settings.bulk_chunk_pause_seconds)
        return processed

    async def _follow(self, action: str, acted: list[Acted]) -> None:
        """Redis after the commit, as TaskService.retry / cancel do for one task."""
        try:
            if action == "retry":
                for task in acted:
                    await self.queue.forget_abort(task.id)
                await self.queue.enqueue_many(
                    [Enqueue(t.id, t.run_at, t.priority, t.queue) for t in acted if t.admitted]
                )
            else:
                await self.queue.remove_many([(t.id, t.queue) for t in acted if t.status is not TaskStatus.RUNNING])
                for task in acted:
                    if task.status is TaskStatus.RUNNING:
                        await self.queue.abort(task.id)
        except DependencyUnavailable as exc:
            log.warning("bulk action: queue not updated", action=action, tasks=len(acted), error=str(exc))
        if any(t.limited or not t.admitted for t in acted):
            await self.flow.admit_quietly()

    async def purge(self) -> int:
        return await self.store.purge_finished(
            older_than=timedelta(days=self.settings.retention_days), limit=self.settings.reconcile_batch_size
        )
