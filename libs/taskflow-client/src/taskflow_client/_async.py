"""AsyncClient: the asyncio client (the same methods as Client, awaited)."""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, overload

import httpx
from httpx_sse import SSEError, aconnect_sse
from pydantic import TypeAdapter
from tenacity import AsyncRetrying

from taskflow_client._base import (
    API,
    Call,
    Config,
    TaskId,
    batch_path,
    bulk_call,
    bulk_status_call,
    get_call,
    list_call,
    load_call,
    name_path,
    parse,
    set_limit_call,
    submit_batch_call,
    submit_call,
    submit_workflow_call,
    task_path,
    wait_slice,
    workflow_path,
    workflows_call,
)
from taskflow_client._errors import TransportError, error_from_response
from taskflow_client._models import (
    Batch,
    BatchSubmitted,
    BulkAction,
    Delivery,
    DeliveryList,
    Limit,
    Load,
    Queue,
    QueueStats,
    Task,
    TaskPage,
    TaskStatus,
    TaskType,
    TaskTypePause,
    Transition,
    Workflow,
    WorkflowCreated,
    WorkflowPage,
)
from taskflow_client._schedules import AsyncSchedulesMixin

_TYPES = TypeAdapter(list[TaskType])
_QUEUES = TypeAdapter(list[Queue])
_LIMITS = TypeAdapter(list[Limit])
_HISTORY = TypeAdapter(list[Transition])


class AsyncClient(AsyncSchedulesMixin):
    """A TaskFlow API client for asyncio. ``base_url`` defaults to TASKFLOW_URL, ``api_key`` to TASKFLOW_API_KEY.

    429 and 503 answers are retried ``retries`` times, after the server's Retry-After (at most
    ``max_retry_wait`` seconds). Pass ``http_client`` to bring your own httpx client (transport,
    proxies, event hooks); it is not closed by ``close()``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = Config.resolve(
            base_url, api_key, timeout=timeout, retries=retries, max_retry_wait=max_retry_wait
        )
        self._owned = http_client is None
        self._http = http_client or httpx.AsyncClient()

    @property
    def base_url(self) -> str:
        return self._config.base_url

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- transport ------------------------------------------------------------------------

    async def _send(self, call: Call) -> httpx.Response:
        async for attempt in AsyncRetrying(**self._config.retry_options(resend=call.resend)):
            with attempt:
                try:
                    response = await self._http.request(
                        call.method,
                        self._config.base_url + call.path,
                        params=call.params,
                        json=call.json,
                        headers={**self._config.headers(), **call.headers},
                        timeout=call.timeout or self._config.timeout,
                    )
                except httpx.TransportError as exc:
                    raise TransportError(f"{call.method} {call.path}: {exc!r}") from exc
                if response.is_error:
                    raise error_from_response(response)
        return response

    # -- endpoints ------------------------------------------------------------------------

    async def submit(
        self,
        task_type: str,
        payload: dict[str, Any],
        *,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout_seconds: int | None = None,
        run_at: datetime | None = None,
        delay_seconds: float | None = None,
        idempotency_key: str | None = None,
        queue: str | None = None,
        limit_keys: Sequence[str] | None = None,
        depends_on: Sequence[TaskId] | None = None,
        unique_key: str | None = None,
        unique_for_seconds: int | None = None,
        callback_url: str | None = None,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> Task:
        """Submit a task; with ``wait=True`` return it once terminal (or as it is after ``wait_timeout``).

        ``queue`` overrides the task type's queue; ``limit_keys`` (up to 4, the first is the fair-share key)
        put the task under the limits set on those keys; the task waits (``blocked``) until every task in
        ``depends_on`` succeeded, and its handler sees their results in ``ctx.parents``."""
        call = submit_call(
            task_type,
            payload,
            priority=priority,
            max_retries=max_retries,
            timeout_seconds=timeout_seconds,
            run_at=run_at,
            delay_seconds=delay_seconds,
            idempotency_key=idempotency_key,
            queue=queue,
            limit_keys=limit_keys,
            depends_on=depends_on,
            unique_key=unique_key,
            unique_for_seconds=unique_for_seconds,
            callback_url=callback_url,
        )
        task = parse(await self._send(call), Task)
        return await self.wait(task.id, timeout=wait_timeout) if wait else task

    async def get(self, task_id: TaskId, *, wait: float | None = None) -> Task:
        """The task; with ``wait`` (0 < wait ≤ 60) the server answers once it is terminal or after ``wait`` s."""
        return parse(await self._send(get_call(task_id, wait, self._config.timeout)), Task)

    async def wait(self, task_id: TaskId, *, timeout: float | None = None) -> Task:  # noqa: ASYNC109 (returns, never raises, at the limit)
        """Long-poll until the task is terminal; after ``timeout`` seconds return it as it is (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            task = await self.get(task_id, wait=wait_slice(remaining))
            if task.terminal or (deadline is not None and time.monotonic() >= deadline):
                return task

    async def list(
        self,
        *,
        status: TaskStatus | str | Sequence[TaskStatus | str] | None = None,
        task_type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        queue: str | None = None,
        workflow_id: TaskId | None = None,
        schedule_id: uuid.UUID | str | None = None,
        batch_id: uuid.UUID | str | None = None,
    ) -> TaskPage:
        """One page, newest first; pass ``page.next_cursor`` as ``cursor`` for the next."""
        call = list_call(
            status=status,
            task_type=task_type,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
            queue=queue,
            workflow_id=workflow_id,
            schedule_id=schedule_id,
            batch_id=batch_id,
        )
        return parse(await self._send(call), TaskPage)

    async def iter_tasks(
        self,
        *,
        status: TaskStatus | str | Sequence[TaskStatus | str] | None = None,
        task_type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
        queue: str | None = None,
    ) -> AsyncIterator[Task]:
        """Every matching task, newest first, following the cursor page by page."""
        cursor: str | None = None
        while True:
            page = await self.list(
                status=status,
                task_type=task_type,
                created_after=created_after,
                created_before=created_before,
                limit=page_size,
                cursor=cursor,
                queue=queue,
            )
            for task in page.items:
                yield task
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def submit_batch(
        self,
        tasks: Sequence[dict[str, Any]],
        *,
        on_complete: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> BatchSubmitted:
        """Submit up to 1,000 tasks at once (all or nothing): one dict per task, ``{"task_type",
        "payload", ...options}`` and optionally its own ``idempotency_key``. ``on_complete``
        (``{"task_type", "payload", ...}``) is submitted once every task is terminal; its handler sees
        ``ctx.batch``. The call carries an Idempotency-Key (``idempotency_key``, else a new one) and is
        sent again with it after any transport error: nothing is stored twice. Returns the batch_id
        and the items."""
        call = submit_batch_call(tasks, on_complete=on_complete, idempotency_key=idempotency_key)
        return parse(await self._send(call), BatchSubmitted)

    async def batch(self, batch_id: uuid.UUID | str) -> Batch:
        """A batch: its tasks' counts by status, whether it finished, its on_complete task."""
        return parse(await self._send(Call("GET", batch_path(batch_id))), Batch)

    async def submit_workflow(
        self, name: str, tasks: Sequence[dict[str, Any]], *, callback_url: str | None = None
    ) -> WorkflowCreated:
        """Submit a workflow: one dict per step, ``{"ref", "task_type", "payload", "depends_on": [refs], ...}``
        (the usual task options too). Returns its id and each step's task id by ref."""
        return parse(await self._send(submit_workflow_call(name, tasks, callback_url)), WorkflowCreated)

    async def workflow(self, workflow_id: TaskId) -> Workflow:
        """A workflow with its status, counts by task status and every step."""
        return parse(await self._send(Call("GET", workflow_path(workflow_id))), Workflow)

    async def workflows(self, *, limit: int | None = None, cursor: str | None = None) -> WorkflowPage:
        """Workflows, newest first (without their steps)."""
        return parse(await self._send(workflows_call(limit, cursor)), WorkflowPage)

    async def cancel_workflow(self, workflow_id: TaskId) -> Workflow:
        """Cancel every step that has not finished (running ones are stopped by their workers)."""
        return parse(await self._send(Call("POST", workflow_path(workflow_id, "/cancel"))), Workflow)

    async def cancel(self, task_id: TaskId) -> Task:
        return parse(await self._send(Call("POST", task_path(task_id, "/cancel"))), Task)

    async def deliveries(self, task_id: TaskId) -> builtins.list[Delivery]:
        """The task's callback deliveries, oldest first, each with its attempts (docs/callbacks.md)."""
        return parse(await self._send(Call("GET", task_path(task_id, "/deliveries"))), DeliveryList).items

    async def retry(self, task_id: TaskId) -> Task:
        return parse(await self._send(Call("POST", task_path(task_id, "/retry"))), Task)

    async def history(self, task_id: TaskId) -> builtins.list[Transition]:
        """Every transition of the task, oldest first: when, from → to, the attempt, who, and details."""
        return _HISTORY.validate_python((await self._send(Call("GET", task_path(task_id, "/history")))).json())

    async def task_types(self) -> builtins.list[TaskType]:
        response = await self._send(Call("GET", "/api/v1/task-types"))
        return _TYPES.validate_python(response.json()["items"])

    @overload
    async def queue(self) -> QueueStats: ...
    @overload
    async def queue(self, name: str) -> Queue: ...
    async def queue(self, name: str | None = None) -> QueueStats | Queue:
        """Without a name, the aggregate over every queue; with one, that queue (NotFound when nothing names it)."""
        if name is None:
            return parse(await self._send(Call("GET", f"{API}/queue")), QueueStats)
        return parse(await self._send(Call("GET", name_path("queues", name))), Queue)

    # -- flow control ---------------------------------------------------------------------

    async def queues(self) -> builtins.list[Queue]:
        """Every queue: depth, due, running, pause and the live workers consuming it."""
        return _QUEUES.validate_json((await self._send(Call("GET", f"{API}/queues"))).content)

    async def pause_queue(self, name: str) -> Queue:
        """Pause a queue (admin): it accepts submits, no worker starts its tasks until resumed."""
        return parse(await self._send(Call("POST", name_path("queues", name, "/pause"))), Queue)

    async def resume_queue(self, name: str) -> Queue:
        return parse(await self._send(Call("POST", name_path("queues", name, "/resume"))), Queue)

    async def pause_task_type(self, name: str) -> TaskTypePause:
        """Pause a task type (admin): its tasks are accepted and wait until resumed."""
        return parse(await self._send(Call("POST", name_path("task-types", name, "/pause"))), TaskTypePause)

    async def resume_task_type(self, name: str) -> TaskTypePause:
        return parse(await self._send(Call("POST", name_path("task-types", name, "/resume"))), TaskTypePause)

    async def limits(self) -> builtins.list[Limit]:
        """Every limit with the slots in use now (and, for a template, its busiest keys)."""
        return _LIMITS.validate_json((await self._send(Call("GET", f"{API}/limits"))).content)

    async def limit(self, key: str) -> Limit:
        return parse(await self._send(Call("GET", name_path("limits", key))), Limit)

    async def set_limit(
        self, key: str, *, max_running: int | None = None, per_second: float | None = None, burst: int | None = None
    ) -> Limit:
        """Create or replace the limit on ``key`` (admin); a key ending in ``*`` is a template."""
        call = set_limit_call(key, max_running=max_running, per_second=per_second, burst=burst)
        return parse(await self._send(call), Limit)

    async def delete_limit(self, key: str) -> None:
        await self._send(Call("DELETE", name_path("limits", key)))

    async def load(self, queues: str | Sequence[str]) -> Load:
        """Due + running tasks of these queues (a worker pool's scaling signal)."""
        return parse(await self._send(load_call(queues)), Load)

    async def bulk(self, action: str, filter: dict[str, Any] | None = None, *, dry_run: bool = False) -> BulkAction:
        """Retry or cancel every task ``filter`` matches (scope admin). ``dry_run``: only the count
        (``matched``); otherwise the started action (``id``), which the workers carry out in chunks:
        follow it with ``bulk_status``. A 503 means nothing was started (retried like any call)."""
        call = bulk_call(action, filter, dry_run)
        return parse(await self._send(call), BulkAction)

    async def bulk_status(self, bulk_id: uuid.UUID | str) -> BulkAction:
        """A bulk action's progress and outcome counts (matched, done, succeeded, skipped, failed, status)."""
        return parse(await self._send(bulk_status_call(bulk_id)), BulkAction)

    async def events(self, task_id: TaskId) -> AsyncIterator[Task]:
        """The task as the server streams it (SSE): on each state change and each new progress report
        (``task.progress``), the current state first; ends when terminal."""
        url = self._config.base_url + task_path(task_id, "/events")
        headers = {**self._config.headers(), "Accept": "text/event-stream"}
        timeout = httpx.Timeout(self._config.timeout, read=None)
        try:
            async with aconnect_sse(self._http, "GET", url, headers=headers, timeout=timeout) as source:
                if source.response.is_error:
                    await source.response.aread()
                    raise error_from_response(source.response)
                async for event in source.aiter_sse():
                    if event.event in ("status", "progress"):
                        yield Task.model_validate_json(event.data)
        except (httpx.TransportError, SSEError) as exc:
            raise TransportError(f"events of {task_id}: {exc!r}") from exc
