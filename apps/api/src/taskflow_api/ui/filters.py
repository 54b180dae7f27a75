"""The task list's extra filters as the dashboard takes them: queue, limit key, and a payload field.

The payload box takes a JSON object (``{"customer_id": 42}``) or one field as ``customer_id = 42``
(the value read as JSON when it is JSON, else as a string); both become the containment filter
``payload @> {...}`` that GET /api/v1/tasks?payload= uses.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson
from fastapi import Request

from taskcore.errors import TaskValidationError
from taskcore.flow import LIMIT_KEY_PATTERN, QUEUE_PATTERN
from taskcore.store.bulk import ACTIONS, ELIGIBLE, BulkRepository
from taskcore.store.repository import ListFilter
from taskflow_api.auth import Scope
from taskflow_api.deps import AppState
from taskflow_api.filters import check_payload_filter, parse_payload_filter

_FIELD = re.compile(r"^\s*(?:payload\.)?([A-Za-z0-9_.-]+)\s*=\s*(.+?)\s*$")


def payload_from_text(text: str) -> dict[str, Any] | None:
    """The containment document a user typed; TaskValidationError (field ``payload``) when it is neither form."""
    if not text.strip():
        return None
    if text.strip().startswith("{"):
        return parse_payload_filter(text)
    match = _FIELD.match(text)
    if match is None:
        raise TaskValidationError(
            "payload filter not understood",
            [{"field": "payload", "message": 'use customer_id = 42 or {"customer_id": 42}', "type": "payload_filter"}],
        )
    path, raw = match.groups()
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw.strip("\"'")
    for key in reversed(path.split(".")):  # a.b = 1 -> {"a": {"b": 1}}
        value = {key: value}
    return check_payload_filter(value)


def payload_text(payload: dict[str, Any] | None) -> str:
    return orjson.dumps(payload).decode() if payload else ""


def checked(value: str, pattern: str, what: str) -> tuple[str | None, str | None]:
    """(the value or None, an error message or None) for a free-text filter box."""
    value = value.strip()
    if not value:
        return None, None
    if re.fullmatch(pattern, value) is None:
        return None, f"{what} {value!r} is not valid (it must match {pattern})."
    return value, None


def queue_filter(value: str) -> tuple[str | None, str | None]:
    name, error = checked(value, QUEUE_PATTERN, "Queue")
    if error is not None:
        error = f"Queue {value.strip()!r} is not a queue name (lower-case letters, digits, - and _)."
    return name, error


def limit_key_filter(value: str) -> tuple[str | None, str | None]:
    return checked(value, LIMIT_KEY_PATTERN, "Limit key")


def bulk_filter(action: str, filters: ListFilter) -> ListFilter | None:
    """``filters`` for a bulk ``action`` from the list page: its statuses narrowed to those the action
    applies to; None when none of the statuses shown can be acted on."""
    eligible = ELIGIBLE[action]
    if not filters.statuses:
        return filters
    kept = [s for s in filters.statuses if s in eligible]
    return dataclasses.replace(filters, statuses=kept) if kept else None


async def bulk_offers(request: Request, state: AppState, filters: ListFilter) -> dict[str, int]:
    """For an admin: how many listed tasks "Retry all N matching" / "Cancel all N matching" would act on
    (a dry run each, over the indexes the list uses); nothing for anyone else or when N is 0."""
    principal = getattr(request.state, "ui_principal", None)
    if principal is None or not principal.allows(Scope.ADMIN):
        return {}
    store = BulkRepository(state.repo.pool)
    offers: dict[str, int] = {}
    for action in ACTIONS:
        narrowed = bulk_filter(action, filters)
        if narrowed is not None:
            count = await store.count(action, narrowed)
            if count:
                offers[action] = count
    return offers
