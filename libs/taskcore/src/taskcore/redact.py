"""Secrets never reach a log line: a structlog processor that masks them wherever they appear.

It masks the password in any ``scheme://user:password@host`` URL (PostgreSQL and Redis URLs),
the credentials after ``Bearer`` / ``Basic``, and the whole value of any field whose name says
it holds a secret (``authorization``, ``password``, ``api_key``...), in the event, its fields and
the rendered exception.
"""

from __future__ import annotations

import re
from typing import Any

from structlog.types import EventDict, WrappedLogger

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)")
_AUTH_SCHEME = re.compile(r"(?i)\b(?P<head>bearer|basic)\s+[^\s,;\"']+")
_SECRET_NAMES = re.compile(r"(?i)(authorization|password|passwd|secret|api[_-]?key|token|cookie)")


def redact_text(text: str) -> str:
    """``text`` with URL passwords and Authorization credentials masked."""
    if "@" not in text:  # the common case, checked cheaply: no URL credentials and no auth scheme
        lowered = text.lower()
        if "bearer" not in lowered and "basic" not in lowered:
            return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _AUTH_SCHEME.sub(lambda m: f"{m.group('head')} {MASK}", text)


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {
            k: MASK if isinstance(k, str) and _SECRET_NAMES.search(k) else _redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact(v, depth + 1) for v in value)
    return value


def redact_secrets(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """structlog processor: run it after the exception is rendered and before the renderer."""
    for key, value in list(event.items()):
        if key != "event" and _SECRET_NAMES.search(key):
            event[key] = MASK
        else:
            event[key] = _redact(value)
    return event
