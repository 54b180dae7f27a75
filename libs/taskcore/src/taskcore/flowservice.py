"""Queues, limits and pauses as operations: PostgreSQL first, then Redis, as for tasks.

``FlowService.admit`` runs one admission round (taskcore.store.flow) and enqueues what it
admitted. Any process may call it: after a submit under a key, when a limit changes or a pause
lifts, and from every worker's admission loop, which is also what finishing a task under a key
wakes. A round that finds another process admitting does nothing: that one sees the same work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from taskcore.errors import DependencyUnavailable, TaskValidationError
from taskcore.flow import Limit, check_queue_name
from taskcore.queue import Enqueue, TaskQueue
from taskcore.registry import TaskRegistry
from taskcore.settings import Settings
from taskcore.store.flow import FlowRepository, LimitUsage, QueueInfo

log = structlog.get_logger("taskflow.flow")


@dataclass(frozen=True, slots=True)
class Load:
    """What a pool of workers consuming ``queues`` must hold: due and running tasks (the scaling signal)."""

    queues: tuple[str, ...]
    due: int
    running: int

    @property
    def load(self) -> int:
        return self.due + self.running


class FlowService:
    def __init__(self, *, flow: FlowRepository, queue: TaskQueue, registry: TaskRegistry, settings: Settings) -> None:
        self.flow = flow
        self.queue = queue
        self.registry = registry
        self.settings = settings

    async def admit(self) -> int:
        """One admission round; the number of tasks admitted (0 also when another process is admitting)."""
        admitted = await self.flow.admit(window=self.settings.admission_window)
        if not admitted:
            return 0
        try:
            await self.queue.enqueue_many([Enqueue(a.id, a.run_at, a.priority, a.queue) for a in admitted])
        except DependencyUnavailable as exc:
            # Admitted is stored: the reconciler enqueues admitted tasks that have no job.
            log.warning("tasks admitted but not enqueued", count=len(admitted), error=str(exc))
        return len(admitted)

    async def admit_quietly(self) -> None:
        """``admit`` where a failure must not fail the caller (the task is stored; the loop admits it later)."""
        try:
            await self.admit()
        except DependencyUnavailable as exc:
            log.warning("admission round failed", error=str(exc))

    # -- queues and task types ----------------------------------------------------------------

    async def queues(self) -> list[QueueInfo]:
        return await self.flow.queues()

    async def queue_info(self, name: str) -> QueueInfo | None:
        found = await self.flow.queues(name=check_queue_name(name, field="name"))
        return found[0] if found else None

    async def pause(self, kind: str, name: str) -> None:
        """Pause a queue or a task type: new and waiting tasks stay queued; running ones finish."""
        self._check_pausable(kind, name)
        taken = await self.flow.pause(kind, name)
        try:
            await self.queue.remove_many([(t.id, t.queue) for t in taken])
        except DependencyUnavailable as exc:
            # A job left behind is harmless: its claim finds the task not admitted and drops it.
            log.warning("paused, but jobs left in redis", count=len(taken), error=str(exc))

    async def resume(self, kind: str, name: str) -> bool:
        self._check_pausable(kind, name)
        found = await self.flow.resume(kind, name)
        await self.admit_quietly()
        return found

    def _check_pausable(self, kind: str, name: str) -> None:
        if kind == "queue":
            check_queue_name(name, field="name")
        elif name not in self.registry:
            self.registry.get(name)  # raises the usual unknown-task-type error

    # -- limits -------------------------------------------------------------------------------

    async def set_limit(
        self, key: str, *, max_running: int | None, per_second: float | None, burst: int | None
    ) -> tuple[LimitUsage, bool]:
        limit = Limit.checked(key, max_running=max_running, per_second=per_second, burst=burst)
        _, created = await self.flow.set_limit(limit)
        await self.admit_quietly()  # a raised limit takes effect now, not at the next loop
        return await self.flow.limit(key), created

    async def limits(self) -> list[LimitUsage]:
        return await self.flow.limits()

    async def limit(self, key: str) -> LimitUsage:
        return await self.flow.limit(key)

    async def delete_limit(self, key: str) -> None:
        await self.flow.delete_limit(key)
        await self.admit_quietly()

    # -- scaling signal -------------------------------------------------------------------------

    async def load(self, queues: Sequence[str]) -> Load:
        names = tuple(dict.fromkeys(check_queue_name(q, field="queue") for q in queues))
        if not names:
            raise TaskValidationError(
                "name at least one queue", [{"field": "queue", "message": "at least one", "type": "missing"}]
            )
        infos = {q.name: q for q in await self.flow.queues()}
        found = [infos[n] for n in names if n in infos]
        return Load(names, due=sum(q.due for q in found), running=sum(q.running for q in found))


async def admission_loop(service: FlowService, wake: asyncio.Event, *, interval: float) -> None:
    """Admit whenever woken (a task under a key finished) or every ``interval`` seconds while work waits.
    An outage is logged when it starts and when it ends, not every ``interval``."""
    down: str | None = None
    while True:
        try:
            async with asyncio.timeout(interval):
                await wake.wait()
        except TimeoutError:
            pass
        wake.clear()
        try:
            if await service.flow.pending_admission():
                while await service.admit() > 0:
                    pass  # more may fit: the window refills as workers start what was admitted
        except DependencyUnavailable as exc:
            if down != str(exc):
                log.warning("admission paused: store or queue unavailable", error=str(exc))
            down = str(exc)
            continue
        if down is not None:
            log.info("admission resumed")
            down = None
