"""The reconciler: one leader at a time (PostgreSQL advisory lock) keeps Redis and PostgreSQL in step."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import structlog

from taskcore.domain import TaskStatus
from taskcore.errors import LeaseExpired
from taskcore.queue import TaskQueue
from taskcore.settings import Settings
from taskcore.store.batches import BatchRepository
from taskcore.store.repository import TaskRepository

log = structlog.get_logger("taskflow.reconciler")

LEADER_LOCK_KEY = 0x7A5CF11
MAX_PURGE_BATCHES = 1000  # per pass, whatever the time budget


@dataclass(slots=True)
class TickReport:
    leader: bool = False
    recovered: int = 0
    enqueued: int = 0
    released: int = 0
    purged: int = 0


class Reconciler:
    def __init__(self, *, repo: TaskRepository, queue: TaskQueue, settings: Settings) -> None:
        self.repo = repo
        self.queue = queue
        self.settings = settings
        self._scan_after: UUID | None = None

    async def tick(self) -> TickReport:
        report = TickReport()
        async with self.repo.leadership(LEADER_LOCK_KEY) as leader:
            if not leader:
                return report
            report.leader = True
            report.recovered = await self._recover_expired_leases()
            report.enqueued, report.released = await self._enqueue_missing()
            report.purged = await self._purge()
            await BatchRepository(self.repo.pool).purge(
                older_than=timedelta(days=self.settings.retention_days), limit=self.settings.reconcile_batch_size
            )
            await self.repo.forget_workers(unseen_for=timedelta(days=1))
            await self.repo.purge_unique_keys(limit=self.settings.reconcile_batch_size)
        if report.recovered or report.enqueued or report.released or report.purged:
            log.info(
                "reconciled",
                recovered=report.recovered,
                enqueued=report.enqueued,
                released=report.released,
                purged=report.purged,
            )
        return report

    async def _purge(self) -> int:
        """Finished tasks past retention: one batch, then more full batches while the pass's purge budget
        (retention_purge_seconds) lasts, so that the purge keeps up with the rate tasks finish at. After
        each batch it waits as long as the batch took: the deletes take at most half of the database's
        time while the purge runs, and live commits are not queued behind a burst of them."""
        older_than = timedelta(days=self.settings.retention_days)
        limit = self.settings.reconcile_batch_size
        budget_ends = time.monotonic() + self.settings.retention_purge_seconds
        purged = 0
        for _ in range(MAX_PURGE_BATCHES):
            began = time.monotonic()
            batch = await self.repo.purge_finished(older_than=older_than, limit=limit)
            purged += batch
            took = time.monotonic() - began
            if batch < limit or time.monotonic() + took >= budget_ends:
                break
            await asyncio.sleep(took)
        return purged

    async def _recover_expired_leases(self) -> int:
        recovered = await self.repo.recover_expired(
            limit=self.settings.reconcile_batch_size, error=LeaseExpired.as_error()
        )
        for task in recovered:
            if task.status is TaskStatus.SCHEDULED and task.admitted:
                await self.queue.requeue_stale(task.id, run_at=task.run_at, priority=task.priority, queue=task.queue)
        # Not admitted (under a limit, or paused): the admitter's. Their dead worker's job goes, so that
        # the admitter's enqueue is not refused by a job still marked in progress.
        waiting = [t for t in recovered if t.status is TaskStatus.SCHEDULED and not t.admitted]
        if waiting:
            await self.queue.clear_in_progress([t.id for t in waiting])
            await self.queue.remove_many([(t.id, t.queue) for t in waiting])
        return len(recovered)

    async def _enqueue_missing(self) -> tuple[int, int]:
        """Scan a batch of waiting tasks (rotating through all of them): enqueue those without a job, and
        free the jobs a worker marked in progress but never claimed (it died in between: without this
        the task would wait for arq's in-progress mark to expire, about max_timeout_seconds)."""
        batch = await self.repo.waiting_batch(
            after=self._scan_after,
            limit=self.settings.reconcile_batch_size,
            settled_for=timedelta(seconds=self.settings.enqueue_grace_seconds),
        )
        self._scan_after = batch[-1].id if len(batch) == self.settings.reconcile_batch_size else None
        by_id = {t.id: t for t in batch}
        missing = await self.queue.missing(list(by_id))
        lost = set(missing)
        for task_id in missing:
            task = by_id[task_id]
            # waiting_batch returns admitted tasks only: nothing here enqueues a task that may not start
            await self.queue.enqueue(task.id, run_at=task.run_at, priority=task.priority, queue=task.queue)
        stuck = await self.queue.stale_in_progress(
            [t for t in by_id if t not in lost],
            marked_before=timedelta(seconds=self.settings.lease_seconds),
            max_timeout_seconds=self.settings.max_timeout_seconds,
        )
        await self.queue.clear_in_progress(stuck)
        return len(missing), len(stuck)
