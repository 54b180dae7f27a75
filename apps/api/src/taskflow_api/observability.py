"""Per-request observability: request id, access log line, HTTP metrics and the request span.

A client's ``X-Request-ID`` (when it is a sane token) is kept, otherwise one is generated; it
is bound to every log line of the request, returned in the response header and stored with
the tasks the request submits (``origin_of``), so the worker logs it too.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskcore.service import Origin
from taskcore.telemetry import Tracing
from taskflow_api.metrics import ApiMetrics

log = structlog.get_logger("taskflow.api")

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


def origin_of(request: Request) -> Origin:
    """What a submit stores about where it came from."""
    tracing: Tracing = request.app.state.tracing
    return Origin(request_id=getattr(request.state, "request_id", None), traceparent=tracing.current_traceparent())


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, tracing: Tracing) -> None:
        self.app = app
        self.metrics = metrics
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        method = scope["method"]
        status = 500
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        started = time.perf_counter()
        with (
            structlog.contextvars.bound_contextvars(request_id=request_id),
            self.tracing.server_span(method, {"http.request.method": method}) as span,
        ):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", None) or UNMATCHED
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                span.set_attribute("taskflow.request_id", request_id)
                self.metrics.requests.labels(method, route, str(status)).inc()
                self.metrics.latency.labels(method, route).observe(elapsed)
                level = log.debug if route in QUIET_ROUTES else log.info
                level("request", method=method, route=route, status=status, duration_ms=round(elapsed * 1000, 2))
