"""The task filters beyond the basic ones, shared by the list (API and dashboard) and bulk actions:
a limit key, the last error's type, and a payload containment document."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Query
from pydantic import AfterValidator

from taskcore.errors import TaskValidationError
from taskcore.flow import LIMIT_KEY_PATTERN
from taskcore.jsonvalue import NotStorableJSON, dumps_storable

MAX_PAYLOAD_FILTER_BYTES = 4096


def _bad_payload(field: str, message: str) -> TaskValidationError:
    return TaskValidationError(f"{field} {message}", [{"field": field, "message": message, "type": "payload_filter"}])


def check_payload_filter(value: dict[str, Any], *, field: str = "payload") -> dict[str, Any]:
    """A containment document as the filter takes it: a JSON object jsonb can hold, size-bounded."""
    try:
        encoded = dumps_storable(value)
    except NotStorableJSON as exc:
        raise _bad_payload(field, str(exc)) from exc
    if len(encoded) > MAX_PAYLOAD_FILTER_BYTES:
        raise _bad_payload(field, f"must be at most {MAX_PAYLOAD_FILTER_BYTES} bytes as JSON")
    return value


def parse_payload_filter(text: str | None, *, field: str = "payload") -> dict[str, Any] | None:
    """``?payload={"customer_id": 42}``: the tasks whose payload contains this JSON object."""
    if text is None or not text.strip():
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _bad_payload(field, f"is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise _bad_payload(field, 'must be a JSON object, e.g. {"customer_id": 42}')
    return check_payload_filter(value, field=field)


def _storable_object(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        check_payload_filter(value)
    except TaskValidationError as exc:
        raise ValueError(exc.errors[0]["message"]) from exc
    return value


PayloadDocument = Annotated[dict[str, Any] | None, AfterValidator(_storable_object)]
"""A payload containment document in a request body (validated as the query parameter is)."""
PayloadQuery = Annotated[
    str | None,
    Query(
        max_length=MAX_PAYLOAD_FILTER_BYTES,
        description='A JSON object the payload must contain (`{"customer_id": 42}`): jsonb containment, indexed',
    ),
]
LimitKeyQuery = Annotated[str | None, Query(pattern=LIMIT_KEY_PATTERN, description="Tasks naming this limit key")]
ErrorTypeQuery = Annotated[
    str | None,
    Query(max_length=200, pattern=r"^[^\x00]+$", description="The error.type of the task's last failed attempt"),
]
