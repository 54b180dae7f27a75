"""Callbacks: a task's ``callback_url`` is POSTed the task JSON when the task ends (docs/callbacks.md).

What is here is pure: checking a URL at submit, classifying the addresses a host resolves to (SSRF),
signing a body, the retry delay, and the POST body built from the task row the outbox trigger
saved. The outbox rows are taskcore/store/callbacks.py; the sender runs in the worker
(taskflow_worker/callbacks.py).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
from dataclasses import fields
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from taskcore.domain import BackoffPolicy, Task, TaskStatus
from taskcore.errors import TaskValidationError
from taskcore.settings import Settings

MAX_CALLBACK_URL_LENGTH = 2048
BACKOFF_CAP_SECONDS = 3600.0
SIGNATURE_HEADER = "TaskFlow-Signature"
DELIVERY_HEADER = "TaskFlow-Delivery"
EVENT_HEADER = "TaskFlow-Event"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _invalid(message: str, kind: str = "url_invalid", field: str = "callback_url") -> TaskValidationError:
    return TaskValidationError(f"{field} {message}", [{"field": field, "message": message, "type": kind}])


def webhook_secret(settings: Settings) -> bytes | None:
    """The signing key, or None when TASKFLOW_WEBHOOK_SECRET is unset (or empty): callbacks are off."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret is not None else ""
    return secret.encode() if secret else None


def refused_address(address: IPAddress) -> str | None:
    """Why a callback may not go to ``address`` (unless TASKFLOW_WEBHOOK_ALLOW_PRIVATE), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return f"{address} is an unspecified address"
    if address.is_loopback:
        return f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.IPv6Network("fc00::/7"):
        return f"{address} is a unique-local address"
    if address.is_private:
        return f"{address} is a private address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address when ``host`` (as urlsplit gives it, brackets removed) is an IP literal."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_callback_url(url: str | None, settings: Settings, *, field: str = "callback_url") -> str | None:
    """The URL as given when a callback may be sent to it; TaskValidationError naming ``field``
    otherwise. A host name is checked after resolution, when sending; an IP literal here too."""
    if url is None:
        return None
    if webhook_secret(settings) is None:
        raise _invalid("this server has no TASKFLOW_WEBHOOK_SECRET; callbacks are off", "callbacks_off", field)
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        raise _invalid(f"must be at most {MAX_CALLBACK_URL_LENGTH} characters", "string_too_long", field)
    problem = _url_problem(url)
    if problem is not None:
        raise _invalid(problem, field=field)
    address = literal_address(urlsplit(url).hostname or "")
    if address is not None and not settings.webhook_allow_private:
        why = refused_address(address)
        if why is not None:
            raise _invalid(f"is refused: {why} (TASKFLOW_WEBHOOK_ALLOW_PRIVATE is off)", "url_refused", field)
    return url


def _url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as a callback URL, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        return "must not contain spaces or control characters"
    if port == 0:
        return "must not use port 0"
    return None


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The TaskFlow-Signature header: ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_delay(attempt: int, base_seconds: float, *, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after failed attempt ``attempt`` (1-based): exponential from
    ``base_seconds``, capped at an hour, with equal jitter (half fixed, half random)."""
    return BackoffPolicy(base_seconds, BACKOFF_CAP_SECONDS).delay(attempt, rng=rng)


def _when(value: Any) -> str | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.isoformat().replace("+00:00", "Z")


def task_from_row(row: dict[str, Any]) -> Task:
    """The task as the outbox trigger saved it (``to_jsonb`` of the row)."""
    when = ("created_at", "updated_at", "run_at", "started_at", "finished_at", "scheduled_for")
    values = {f.name: row[f.name] for f in fields(Task) if f.name in row}
    values["ref"] = row.get("step_ref")
    for name in when:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    values["id"] = UUID(row["id"])
    values["status"] = TaskStatus(row["status"])
    values["limit_keys"] = tuple(row.get("limit_keys") or ())
    values["depends_on"] = tuple(UUID(p) for p in row.get("depends_on") or ())
    for name in ("workflow_id", "schedule_id"):
        if values.get(name) is not None:
            values[name] = UUID(values[name])
    return Task(**values)


def task_document(task: Task) -> dict[str, Any]:
    """The task as GET /api/v1/tasks/{id} answers it (apps/api TaskOut; a unit test keeps the two equal)."""
    base = f"/api/v1/tasks/{task.id}"
    return {
        "id": str(task.id),
        "task_type": task.task_type,
        "payload": task.payload,
        "status": task.status.value,
        "priority": task.priority,
        "attempt": task.attempt,
        "max_retries": task.max_retries,
        "timeout_seconds": task.timeout_seconds,
        "created_at": _when(task.created_at),
        "run_at": _when(task.run_at),
        "started_at": _when(task.started_at),
        "finished_at": _when(task.finished_at),
        "cancel_requested": task.cancel_requested,
        "queue": task.queue,
        "limit_keys": list(task.limit_keys),
        "workflow_id": None if task.workflow_id is None else str(task.workflow_id),
        "ref": task.ref,
        "depends_on": [str(p) for p in task.depends_on],
        "schedule_id": None if task.schedule_id is None else str(task.schedule_id),
        "scheduled_for": _when(task.scheduled_for),
        "unique_key": task.unique_key,
        "batch_id": None if task.batch_id is None else str(task.batch_id),
        "completes_batch": None if task.completes_batch is None else str(task.completes_batch),
        "callback_url": task.callback_url,
        "result": task.result,
        "error": task.error,
        "progress": task.progress,
        "links": {"self": base, "cancel": f"{base}/cancel", "retry": f"{base}/retry"},
    }
