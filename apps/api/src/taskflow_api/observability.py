"""Per-request observability: the request id, and what a submit stores about its origin.

The access log line, HTTP metrics and the request span are recorded by the edge middleware
(``_edge.py``). A client's ``X-Request-ID`` (when it is a sane token) is kept, otherwise one is generated; it
is bound to every log line of the request, returned in the response header and stored with
the tasks the request submits (``origin_of``), so the worker logs it too.
"""

from __future__ import annotations

import re
import uuid

from starlette.requests import Request
from starlette.types import Scope

from taskcore.service import Origin
from taskcore.telemetry import Tracing

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
QUIET_ROUTES = frozenset({"/health", "/ready", "/metrics"})  # probes and scrapes log at DEBUG
UNMATCHED = "unmatched"  # the route label of requests no route matched (404s): never the raw path


def request_id_from(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SANE_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def origin_of(request: Request, tracing: Tracing) -> Origin:
    """What a submit stores about where it came from (read inside the request's span)."""
    return Origin(
        request_id=getattr(request.state, "request_id", None),
        traceparent=tracing.current_traceparent(),
        actor=actor_of(request),
    )


def actor_of(request: Request) -> str:
    """Who acts, as a task's history names it: ``api:<key name>`` (``api`` with auth off), or
    ``dashboard:<key name>`` (``dashboard``) for the dashboard's own requests."""
    principal = getattr(request.state, "principal", None)
    if principal is not None:
        return actor_name("api", principal.name)
    principal = getattr(request.state, "ui_principal", None)
    return actor_name("dashboard", None if principal is None else principal.name)


def actor_name(door: str, key_name: str | None) -> str:
    """``<door>:<key name>``, or the door alone for the anonymous caller (auth off)."""
    return door if key_name in (None, "anonymous") else f"{door}:{key_name}"
