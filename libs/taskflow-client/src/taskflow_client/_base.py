"""What the sync and async clients share: configuration, request building, answers, retry policy."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from taskflow_client._errors import APIError, RateLimited, TransportError, Unavailable, error_from_response
from taskflow_client._models import TaskStatus

DEFAULT_URL = "http://127.0.0.1:8000"
API = "/api/v1"
MAX_WAIT_SECONDS = 60.0  # the server's limit for ?wait=N
TaskId = uuid.UUID | str
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    # Safe to send again after any transport error (it carries an Idempotency-Key that makes a
    # repeat return the first answer), not only when the connection was refused.
    resend: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    base_url: str
    api_key: str | None
    timeout: float
    retries: int
    max_retry_wait: float

    @classmethod
    def resolve(
        cls, base_url: str | None, api_key: str | None, *, timeout: float, retries: int, max_retry_wait: float
    ) -> Config:
        """Explicit arguments win; then TASKFLOW_URL / TASKFLOW_API_KEY; then the local default."""
        return cls(
            base_url=(base_url or os.environ.get("TASKFLOW_URL") or DEFAULT_URL).rstrip("/"),
            api_key=api_key if api_key is not None else (os.environ.get("TASKFLOW_API_KEY") or None),
            timeout=timeout,
            retries=retries,
            max_retry_wait=max_retry_wait,
        )

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "taskflow-client/0.1"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def retry_options(self, *, resend: bool = False) -> dict[str, Any]:
        """tenacity options: 429 and 503 (and a refused connection) are tried again, after Retry-After;
        with ``resend``, any transport error too (a call whose repeat is idempotent)."""
        return {
            "retry": retry_if_exception(_resendable if resend else _retryable),
            "wait": _RetryAfterWait(self.max_retry_wait),
            "stop": stop_after_attempt(self.retries + 1),
            "reraise": True,
        }


class _RetryAfterWait:
    """Wait what the server's Retry-After says (capped); without one, exponential backoff with jitter."""

    def __init__(self, cap: float) -> None:
        self._cap = cap
        self._fallback = wait_exponential_jitter(multiplier=0.2, max=cap, jitter=0.2)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, APIError) and exc.retry_after is not None:
            return min(exc.retry_after, self._cap)
        return float(self._fallback(state))


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, RateLimited | Unavailable):
        return True
    # Nothing reached the server: safe to send again, even a submit.
    return isinstance(exc, TransportError) and isinstance(exc.__cause__, httpx.ConnectError)


def _resendable(exc: BaseException) -> bool:
    return _retryable(exc) or isinstance(exc, TransportError)


def task_path(task_id: TaskId, suffix: str = "") -> str:
    return f"{API}/tasks/{uuid.UUID(str(task_id))}{suffix}"


def submit_call(
    task_type: str,
    payload: dict[str, Any],
    *,
    priority: int | None,
    max_retries: int | None,
    timeout_seconds: int | None,
    run_at: datetime | None,
    delay_seconds: float | None,
    idempotency_key: str | None,
    queue: str | None = None,
    limit_keys: Sequence[str] | None = None,
    depends_on: Sequence[TaskId] | None = None,
    unique_key: str | None = None,
    unique_for_seconds: int | None = None,
    callback_url: str | None = None,
) -> Call:
    body: dict[str, Any] = {"task_type": task_type, "payload": payload}
    options = {
        "priority": priority,
        "max_retries": max_retries,
        "timeout_seconds": timeout_seconds,
        "run_at": run_at.isoformat() if run_at is not None else None,
        "delay_seconds": delay_seconds,
        "queue": queue,
        "limit_keys": list(limit_keys) if limit_keys else None,
        "depends_on": [str(uuid.UUID(str(t))) for t in depends_on] if depends_on else None,
        "unique_key": unique_key,
        "unique_for_seconds": unique_for_seconds,
        "callback_url": callback_url,
    }
    body.update({k: v for k, v in options.items() if v is not None})
    # A key per call makes the client's own retries safe: a repeat returns the task already stored.
    key = idempotency_key or f"taskflow-client-{uuid.uuid4()}"
    return Call("POST", f"{API}/tasks", json=body, headers={"Idempotency-Key": key})


def get_call(task_id: TaskId, wait: float | None, timeout: float) -> Call:
    if wait is None:
        return Call("GET", task_path(task_id))
    return Call("GET", task_path(task_id), params=(("wait", f"{wait:g}"),), timeout=timeout + wait)


def list_call(
    *,
    status: TaskStatus | str | Sequence[TaskStatus | str] | None,
    task_type: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int | None,
    cursor: str | None,
    queue: str | None = None,
    workflow_id: TaskId | None = None,
    schedule_id: uuid.UUID | str | None = None,
    batch_id: uuid.UUID | str | None = None,
) -> Call:
    params: list[tuple[str, str]] = []
    statuses = [status] if isinstance(status, str) else list(status or [])
    params += [("status", str(TaskStatus(s).value)) for s in statuses]
    if task_type is not None:
        params.append(("task_type", task_type))
    if created_after is not None:
        params.append(("created_after", created_after.isoformat()))
    if created_before is not None:
        params.append(("created_before", created_before.isoformat()))
    if queue is not None:
        params.append(("queue", queue))
    if workflow_id is not None:
        params.append(("workflow_id", str(uuid.UUID(str(workflow_id)))))
    if limit is not None:
        params.append(("limit", str(limit)))
    if cursor is not None:
        params.append(("cursor", cursor))
    if schedule_id is not None:
        params.append(("schedule_id", str(uuid.UUID(str(schedule_id)))))
    if batch_id is not None:
        params.append(("batch_id", str(uuid.UUID(str(batch_id)))))
    return Call("GET", f"{API}/tasks", params=tuple(params))


def submit_batch_call(
    tasks: Sequence[dict[str, Any]], *, on_complete: dict[str, Any] | None, idempotency_key: str | None
) -> Call:
    """``tasks``: one dict per task, ``{"task_type", "payload", ...options, "idempotency_key"}``;
    ``on_complete``: ``{"task_type", "payload", ...}``. The batch's Idempotency-Key (one per call
    unless given) makes the client's own resends safe: a repeat replays the first answer."""
    body: dict[str, Any] = {"tasks": list(tasks)}
    if on_complete is not None:
        body["on_complete"] = on_complete
    key = idempotency_key or f"taskflow-client-batch-{uuid.uuid4()}"
    return Call("POST", f"{API}/tasks/batch", json=body, headers={"Idempotency-Key": key}, resend=True)


def batch_path(batch_id: uuid.UUID | str) -> str:
    return f"{API}/batches/{uuid.UUID(str(batch_id))}"


def name_path(kind: str, name: str, suffix: str = "") -> str:
    """``/api/v1/{kind}/{name}{suffix}`` with the name quoted (a limit key may hold ``:`` or ``*``)."""
    return f"{API}/{kind}/{quote(name, safe=':*')}{suffix}"


def set_limit_call(key: str, *, max_running: int | None, per_second: float | None, burst: int | None) -> Call:
    options = {"max_running": max_running, "per_second": per_second, "burst": burst}
    return Call("PUT", name_path("limits", key), json={k: v for k, v in options.items() if v is not None})


def load_call(queues: str | Sequence[str]) -> Call:
    names = [queues] if isinstance(queues, str) else list(queues)
    return Call("GET", f"{API}/load", params=tuple(("queue", q) for q in names))


def parse(response: httpx.Response, model: type[M]) -> M:
    """The answer as ``model``; an error status raises its typed APIError."""
    if response.is_error:
        raise error_from_response(response)
    return model.model_validate_json(response.content)


def wait_slice(remaining: float | None) -> float:
    """One long-poll's length: what is left, at most the server's limit."""
    return MAX_WAIT_SECONDS if remaining is None else max(0.001, min(MAX_WAIT_SECONDS, remaining))


BULK_ACTIONS = ("retry", "cancel")


def bulk_call(action: str, filter: dict[str, Any] | None, dry_run: bool) -> Call:
    """``filter`` as the API takes it: status (a list), task_type, created_after, created_before, queue,
    limit_key, error_type, payload (a JSON object the payload contains). Datetimes may be datetime objects."""
    if action not in BULK_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(BULK_ACTIONS)}, not {action!r}")
    body_filter = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in (filter or {}).items()}
    if isinstance(body_filter.get("status"), str):
        body_filter["status"] = [body_filter["status"]]
    if "status" in body_filter:
        body_filter["status"] = [str(TaskStatus(s).value) for s in body_filter["status"]]
    return Call("POST", f"{API}/bulk", json={"action": action, "filter": body_filter, "dry_run": dry_run})


def bulk_status_call(bulk_id: uuid.UUID | str) -> Call:
    return Call("GET", f"{API}/bulk/{uuid.UUID(str(bulk_id))}")


def workflow_path(workflow_id: TaskId, suffix: str = "") -> str:
    return f"{API}/workflows/{uuid.UUID(str(workflow_id))}{suffix}"


def submit_workflow_call(name: str, tasks: Sequence[dict[str, Any]], callback_url: str | None = None) -> Call:
    """``tasks``: one dict per step, ``{"ref", "task_type", "payload", "depends_on": [refs], ...options}``;
    ``callback_url``: that of every step naming none."""
    body: dict[str, Any] = {"name": name, "tasks": list(tasks)}
    if callback_url is not None:
        body["callback_url"] = callback_url
    return Call("POST", f"{API}/workflows", json=body)


def workflows_call(limit: int | None, cursor: str | None) -> Call:
    params = [("limit", str(limit))] if limit is not None else []
    if cursor is not None:
        params.append(("cursor", cursor))
    return Call("GET", f"{API}/workflows", params=tuple(params))
