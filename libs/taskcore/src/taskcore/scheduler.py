"""Schedules as operations: create, change, pause, trigger (the API), and fire (the schedule leader).

A schedule's task is checked as a submit is (``TaskService._prepare``: type, payload schema,
limits, queue), when the schedule is saved; each run is then stored from that template.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from taskcore.domain import Task
from taskcore.errors import DependencyUnavailable, TaskValidationError
from taskcore.queue import Enqueue
from taskcore.schedules import CatchUp, Overlap, Schedule, TaskTemplate, Timing, check_name
from taskcore.service import Origin, TaskRequest, TaskService
from taskcore.store.repository import DueTask
from taskcore.store.schedules import Fired, NewSchedule, ScheduleRepository

log = structlog.get_logger("taskflow.scheduler")

FIRE_BATCH = 100  # schedules fired per leader pass (the rest in the next pass, moments later)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleInput:
    name: str
    task: TaskRequest
    cron: str | None = None
    every_seconds: int | None = None
    timezone: str = "UTC"
    overlap: Overlap = Overlap.SKIP
    catch_up: CatchUp = CatchUp.LATEST
    paused: bool = False


# The fields a PATCH may name, mapped to what they change.
PATCHABLE = frozenset({"name", "cron", "every_seconds", "timezone", "task", "overlap", "catch_up", "paused"})


class ScheduleService:
    def __init__(self, *, service: TaskService, repo: ScheduleRepository) -> None:
        self.service = service
        self.repo = repo

    async def create(self, spec: ScheduleInput) -> Schedule:
        timing = Timing.checked(spec.cron, spec.every_seconds, spec.timezone)
        template = await self._template(spec.task)
        return await self.repo.create(
            NewSchedule(
                name=check_name(spec.name),
                timing=timing,
                task=template,
                overlap=spec.overlap,
                catch_up=spec.catch_up,
                paused=spec.paused,
            )
        )

    async def update(self, schedule_id: UUID, changes: dict[str, Any]) -> Schedule:
        """Apply a partial update: only the keys in ``changes``. Giving cron clears every_seconds
        and the reverse; a new timing, time zone or resume starts from now."""
        unknown = set(changes) - PATCHABLE
        if unknown:
            raise ValueError(f"not patchable: {sorted(unknown)}")
        template = await self._template(changes["task"]) if "task" in changes else None
        if "name" in changes:
            check_name(changes["name"])

        def change(current: Schedule, now: datetime) -> Schedule:
            timing = _new_timing(current.timing, changes)
            updated = dataclasses.replace(
                current,
                name=changes.get("name", current.name),
                timing=timing,
                task=template or current.task,
                overlap=changes.get("overlap", current.overlap),
                catch_up=changes.get("catch_up", current.catch_up),
                paused=changes.get("paused", current.paused),
            )
            if timing != current.timing or (current.paused and not updated.paused):
                updated = dataclasses.replace(updated, next_run_at=timing.next_after(now))
            return updated

        return await self.repo.update(schedule_id, change)

    async def pause(self, schedule_id: UUID) -> Schedule:
        return await self.update(schedule_id, {"paused": True})

    async def resume(self, schedule_id: UUID) -> Schedule:
        return await self.update(schedule_id, {"paused": False})

    async def trigger(self, schedule_id: UUID) -> Task:
        """Run the schedule's task now, outside its slots (the slots are unchanged)."""
        task_id, due = await self.repo.trigger(schedule_id)
        await self._enqueue([due])
        return await self.service.repo.get(task_id)

    async def delete(self, schedule_id: UUID) -> None:
        await self.repo.delete(schedule_id)

    async def fire(self) -> Fired | None:
        """One pass of the schedule leader; None when another process leads."""
        async with self.repo.leading() as conn:
            if conn is None:
                return None
            fired = await self.repo.fire_due(conn, limit=FIRE_BATCH)
        await self._enqueue(fired.tasks)  # after the commit: a job must find its task stored
        if fired.tasks or fired.skipped:
            log.info("schedules fired", tasks=len(fired.tasks), skipped=fired.skipped)
        return fired

    async def _enqueue(self, tasks: Sequence[DueTask]) -> None:
        admitted = [Enqueue(t.id, t.run_at, t.priority, t.queue) for t in tasks if t.admitted]
        try:
            await self.service.queue.enqueue_many(admitted)
        except DependencyUnavailable as exc:  # stored is what counts: the reconciler enqueues them
            log.warning("scheduled tasks stored but not enqueued", count=len(admitted), error=str(exc))
        if len(admitted) < len(tasks):
            await self.service.flow.admit_quietly()

    async def _template(self, request: TaskRequest) -> TaskTemplate:
        """The task a schedule runs, checked as a submit is; errors name ``task.<field>``."""
        try:
            new = self.service._prepare(request, origin=Origin())
        except TaskValidationError as exc:
            errors = [{**e, "field": f"task.{e['field']}"} for e in exc.errors]
            raise TaskValidationError(f"task: {exc}", errors) from exc
        if request.run_at is not None or request.delay_seconds is not None:
            raise TaskValidationError(
                "task: a schedule's task runs at its slots",
                [{"field": "task.run_at", "message": "not allowed in a schedule", "type": "value_error"}],
            )
        await self.service._note_queues((new.queue,))
        return TaskTemplate(
            task_type=new.task_type,
            payload=new.payload,
            queue=new.queue,
            priority=new.priority,
            max_retries=new.max_retries,
            timeout_seconds=new.timeout_seconds,
            limit_keys=new.limit_keys,
            callback_url=new.callback_url,
        )


def _new_timing(current: Timing, changes: dict[str, Any]) -> Timing:
    if "cron" not in changes and "every_seconds" not in changes and "timezone" not in changes:
        return current
    cron, every = current.cron, current.every_seconds
    if "cron" in changes and "every_seconds" not in changes:
        cron, every = changes["cron"], None if changes["cron"] is not None else every
    elif "every_seconds" in changes and "cron" not in changes:
        cron, every = None if changes["every_seconds"] is not None else cron, changes["every_seconds"]
    elif "cron" in changes:
        cron, every = changes["cron"], changes["every_seconds"]
    return Timing.checked(cron, every, changes.get("timezone", current.timezone))
