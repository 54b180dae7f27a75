"""Workflows: a DAG of steps submitted at once, each step a task that runs once its parents succeeded.

``WorkflowService.submit`` checks the graph (refs unique and known, no cycle, at most
MAX_STEPS steps) and every step as a plain submit would, naming the bad step in each error
(``tasks.<i>.<field>``); then stores it all in one transaction (taskcore.store.workflows) and
enqueues the steps that can start now. What happens next is the store's: a step's success
unblocks its children in the same transaction, a failure for good cancels its descendants.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID, uuid4

import structlog

from taskcore.domain import Task, TaskStatus
from taskcore.errors import DependencyUnavailable, TaskValidationError, WorkflowNotFound
from taskcore.queue import Enqueue
from taskcore.service import Origin, TaskRequest, TaskService, new_ids
from taskcore.store.workflows import NewStep, StoredStep, Workflow, WorkflowRepository

log = structlog.get_logger("taskflow.workflows")

MAX_STEPS = 1000
REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
_REF_RE = re.compile(REF_PATTERN)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRequest:
    """One step as a client asks for it: a task and the refs of the steps it waits for."""

    ref: str
    task: TaskRequest
    depends_on: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class SubmittedWorkflow:
    id: UUID
    steps: list[StoredStep]


def _error(index: int, field: str, message: str, kind: str) -> dict[str, Any]:
    return {"field": f"tasks.{index}.{field}", "message": message, "type": kind, "index": index}


def check_graph(steps: Sequence[StepRequest]) -> list[dict[str, Any]]:
    """What is wrong with the graph, one error per bad step: refs, unknown parents, cycles."""
    errors: list[dict[str, Any]] = []
    first: dict[str, int] = {}
    for index, step in enumerate(steps):
        if not _REF_RE.fullmatch(step.ref):
            errors.append(_error(index, "ref", f"must match {REF_PATTERN}", "value_error"))
        elif step.ref in first:
            errors.append(_error(index, "ref", f"repeats the ref of step {first[step.ref]}", "duplicate_ref"))
        else:
            first[step.ref] = index
    for index, step in enumerate(steps):
        seen: set[str] = set()
        for position, parent in enumerate(step.depends_on):
            if parent not in first:
                errors.append(_error(index, f"depends_on.{position}", f"no step has ref {parent!r}", "unknown_ref"))
            elif parent == step.ref:
                errors.append(_error(index, f"depends_on.{position}", "a step cannot depend on itself", "cycle"))
            elif parent in seen:
                errors.append(_error(index, f"depends_on.{position}", f"repeats {parent!r}", "duplicate_ref"))
            seen.add(parent)
    if not errors:
        errors.extend(_cycles(steps, first))
    return errors


def _cycles(steps: Sequence[StepRequest], index_of: dict[str, int]) -> list[dict[str, Any]]:
    """Kahn's algorithm: the steps left once every step without waiting parents is taken are on
    (or behind) a cycle; each is named with the cycle found from it."""
    waiting = {s.ref: len(s.depends_on) for s in steps}
    children: dict[str, list[str]] = {s.ref: [] for s in steps}
    for step in steps:
        for parent in step.depends_on:
            children[parent].append(step.ref)
    ready = [ref for ref, n in waiting.items() if n == 0]
    while ready:
        ref = ready.pop()
        for child in children[ref]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    stuck = {ref for ref, n in waiting.items() if n > 0}
    parents = {s.ref: [p for p in s.depends_on if p in stuck] for s in steps}
    errors = []
    for ref in sorted(stuck, key=index_of.__getitem__):
        path = _cycle_from(ref, parents)
        if path is not None:
            errors.append(
                _error(index_of[ref], "depends_on", f"is a cycle: {' -> '.join(path)}", "cycle"),
            )
    return errors


def _cycle_from(start: str, parents: dict[str, list[str]]) -> list[str] | None:
    """A path start -> ... -> start along depends_on, if start is on a cycle."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    visited: set[str] = set()
    while stack:
        ref, path = stack.pop()
        for parent in parents[ref]:
            if parent == start:
                return [*path, start]
            if parent not in visited:
                visited.add(parent)
                stack.append((parent, [*path, parent]))
    return None


class WorkflowService:
    def __init__(self, service: TaskService) -> None:
        self.service = service
        self.store = WorkflowRepository(service.repo.pool)

    async def submit(self, name: str, steps: Sequence[StepRequest], *, origin: Origin) -> SubmittedWorkflow:
        """Check the graph and every step; store all of it in one transaction or nothing."""
        if not 1 <= len(steps) <= MAX_STEPS:
            raise TaskValidationError(
                f"a workflow has 1 to {MAX_STEPS} steps",
                [{"field": "tasks", "message": f"must hold 1 to {MAX_STEPS} steps", "type": "too_many"}],
            )
        errors = check_graph(steps)
        news = []
        for index, (step, task_id) in enumerate(zip(steps, new_ids(len(steps)), strict=True)):
            if step.task.depends_on:
                errors.append(_error(index, "depends_on", "a step's depends_on names refs", "value_error"))
                continue
            try:
                new = self.service.prepare(step.task, origin=origin, task_id=task_id)
            except TaskValidationError as exc:
                errors.extend({**e, "field": f"tasks.{index}.{e['field']}", "index": index} for e in exc.errors)
                continue
            news.append(NewStep(new, step.ref, tuple(step.depends_on)))
        if errors:
            bad = sorted({e["index"] for e in errors if "index" in e})
            raise TaskValidationError(
                f"{len(bad)} of {len(steps)} steps are invalid: " + ", ".join(f"tasks.{i}" for i in bad[:10]), errors
            )
        await self.service.note_queues({n.task.queue for n in news})
        workflow_id = uuid4()
        stored = await self.store.insert_workflow(workflow_id, name, news)
        await self._enqueue(stored)
        return SubmittedWorkflow(workflow_id, stored)

    async def _enqueue(self, steps: Sequence[StoredStep]) -> None:
        ready = [s for s in steps if s.status is not TaskStatus.BLOCKED]
        try:
            await self.service.queue.enqueue_many(
                [Enqueue(s.id, s.run_at, s.priority, s.queue) for s in ready if s.admitted]
            )
        except DependencyUnavailable as exc:
            log.warning("workflow stored but its first steps not enqueued", count=len(ready), error=str(exc))
        if any(not s.admitted for s in ready):
            await self.service.flow.admit_quietly()

    async def get(self, workflow_id: UUID) -> Workflow:
        found = await self.store.get(workflow_id)
        if found is None:
            raise WorkflowNotFound(workflow_id)
        return found

    async def page(self, *, limit: int, before: tuple[Any, UUID] | None = None) -> list[Workflow]:
        return await self.store.page(limit=limit, before=before)

    async def cancel(self, workflow_id: UUID, *, actor: str | None = None) -> Workflow:
        """Cancel every step that has not ended; running ones are stopped by their workers."""
        changed = await self.store.cancel(workflow_id, actor=actor)
        if changed is None:
            raise WorkflowNotFound(workflow_id)
        await self._forget(changed)
        return await self.get(workflow_id)

    async def _forget(self, changed: Sequence[Task]) -> None:
        queue = self.service.queue
        try:
            await queue.remove_many([(t.id, t.queue) for t in changed if t.status is TaskStatus.CANCELLED])
            for task in changed:
                if task.status is TaskStatus.RUNNING:
                    await queue.abort(task.id)
        except DependencyUnavailable as exc:
            log.warning("workflow cancelled but the queue not updated", error=str(exc))
        if any(t.limit_keys for t in changed):
            await self.service.flow.admit_quietly()


def step_request(ref: str, task: TaskRequest, depends_on: Sequence[str]) -> StepRequest:
    """A step whose task carries no depends_on of its own (a step's parents are refs)."""
    return StepRequest(ref=ref, task=replace(task, depends_on=()), depends_on=tuple(depends_on))
