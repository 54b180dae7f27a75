"""Waiting for a task without polling: ``GET /tasks/{id}?wait=N`` and ``GET /tasks/{id}/events`` (SSE).

Both subscribe to the process's StatusListener (PostgreSQL LISTEN/NOTIFY) *before* reading
the row, so a change between the read and the wait cannot be missed, and re-read the row
whenever they are woken.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from uuid import UUID

import orjson
from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent

from taskcore.domain import Task
from taskcore.store.notify import StatusListener
from taskcore.store.repository import TaskRepository
from taskflow_api.auth import Scope
from taskflow_api.deps import StateDep, require_scope
from taskflow_api.problems import problem_responses
from taskflow_api.schemas import TaskOut

MAX_WAIT_SECONDS = 60
HEARTBEAT_SECONDS = 15


async def wait_for_terminal(listener: StatusListener, repo: TaskRepository, task_id: UUID, seconds: float) -> Task:
    """The task once it is terminal, or as it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    async with listener.subscribe(task_id) as changes:
        task = await repo.get(task_id)
        while not task.status.terminal and await changes.wait(deadline - time.monotonic()):
            task = await repo.get(task_id)
    return task


async def task_events(
    listener: StatusListener, repo: TaskRepository, task_id: UUID, *, recheck: float = HEARTBEAT_SECONDS
) -> AsyncGenerator[ServerSentEvent, None]:
    """An SSE event per observed state (status, attempt), the current one first, and a ``progress``
    event per new progress value of a running task (at most about one a second: the worker
    throttles); ends when terminal. Each event's data is the whole task.

    Heartbeat comments come from EventSourceResponse's ping; ``recheck`` bounds each wait."""
    async with listener.subscribe(task_id) as changes:
        task = await repo.get(task_id)
        last: tuple[str, int] | None = None
        last_progress = task.progress
        while True:
            seen = (task.status.value, task.attempt)
            if seen != last:
                last = seen
                body = orjson.dumps(TaskOut.of(task).model_dump(mode="json")).decode()
                yield ServerSentEvent(data=body, event="status", id=f"{task.status.value}-{task.attempt}")
            elif task.progress != last_progress and task.progress is not None:
                body = orjson.dumps(TaskOut.of(task).model_dump(mode="json")).decode()
                yield ServerSentEvent(data=body, event="progress", id=f"progress-{task.progress.get('at', '')}")
            last_progress = task.progress
            if task.status.terminal:
                return
            if await changes.wait(recheck):
                task = await repo.get(task_id)


router = APIRouter(prefix="/api/v1")


@router.get(
    "/tasks/{task_id}/events",
    summary="Server-sent events of a task's state changes (ends when it is terminal)",
    responses={
        200: {
            "description": "text/event-stream: `event: status`, `data:` the task as JSON",
            "content": {"text/event-stream": {}},
        },
        **problem_responses(404, 422, 503),
    },
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def events(task_id: UUID, state: StateDep) -> EventSourceResponse:
    stream = task_events(state.listener, state.repo, task_id)
    first = await anext(stream)  # errors (404, 503) surface as problem+json before the stream starts
    return EventSourceResponse(_prepend(first, stream), ping=HEARTBEAT_SECONDS, headers={"Cache-Control": "no-store"})


async def _prepend(
    first: ServerSentEvent, rest: AsyncGenerator[ServerSentEvent, None]
) -> AsyncIterator[ServerSentEvent]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()
