"""The one ASGI middleware every request passes: observability, security headers, CORS, body limit.

One pure ASGI layer instead of four (each layer is a coroutine call and, for three of them, a
wrapper around ``send``): per request it

1. takes the client's ``X-Request-ID`` (when it is a sane token) or makes one, binds it to every
   log line of the request and returns it in the response header;
2. adds the security headers to every answer: a Content-Security-Policy that allows nothing on
   JSON and other non-HTML answers, only ``frame-ancestors 'none'`` on HTML pages (``/docs``,
   the dashboard) so that their own scripts keep working, a page's own CSP kept; API answers
   are not cached (``Cache-Control: no-store``) unless the route set a Cache-Control itself;
3. hands the request to Starlette's CORSMiddleware when origins are configured (off otherwise);
4. refuses a request body over its byte limit with 413 before anything parses it;
5. records the HTTP metrics, the request span (when tracing is on) and one access log line.

The order is the one the four separate middlewares had (1 and 5 outermost, then 2, 3, 4), so
a 413 or a CORS preflight answer carries the request id and the security headers too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog
from prometheus_client.metrics import Counter, Histogram
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskcore.telemetry import Tracing
from taskflow_api.metrics import ApiMetrics
from taskflow_api.observability import QUIET_ROUTES, UNMATCHED, request_id_from

log = structlog.get_logger("taskflow.api")

# A client that writes its whole body before reading the answer sees a connection reset,
# not the 413, when the server answers without reading it; so the rest is read and
# dropped, up to this many times the limit, before answering.
DRAIN_FACTOR = 16
NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CSP_DATA = "default-src 'none'; frame-ancestors 'none'"
CSP_HTML = "frame-ancestors 'none'"
NO_STORE_TYPES = (b"application/json", b"application/problem+json")
_ALWAYS = tuple((name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items())
_CSP = b"content-security-policy"
_CACHE_CONTROL = b"cache-control"
_CSP_DATA = (_CSP, CSP_DATA.encode())
_CSP_HTML = (_CSP, CSP_HTML.encode())
_NO_STORE = (_CACHE_CONTROL, b"no-store")


def with_edge_headers(headers: Sequence[tuple[bytes, bytes]], request_id: bytes) -> list[tuple[bytes, bytes]]:
    """The response headers plus the security headers the route did not set itself and the request id."""
    out = list(headers)
    present = set()
    content_type = b""
    for name, value in headers:
        lowered = name.lower()
        present.add(lowered)
        if lowered == b"content-type":
            content_type = value
    for header in _ALWAYS:
        if header[0] not in present:
            out.append(header)
    if _CSP not in present:
        out.append(_CSP_HTML if content_type.startswith(b"text/html") else _CSP_DATA)
    if _CACHE_CONTROL not in present and content_type.startswith(NO_STORE_TYPES):
        out.append(_NO_STORE)
    out.append((b"x-request-id", request_id))
    return out


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ApiMetrics,
        tracing: Tracing,
        max_bytes: int,
        per_path: Mapping[str, int] | None = None,
        cors: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracing = tracing
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})  # exact paths with a limit of their own (the batch submit)
        # CORS sits between the headers and the body limit, as when they were separate layers.
        self.inner: ASGIApp = CORSMiddleware(self._limited, **cors) if cors else self._limited
        # Metric series looked up once per label set, not per request (prometheus' labels() takes a lock).
        self._counted: dict[tuple[str, str, int], Counter] = {}
        self._timed: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        method: str = scope["method"]
        status = 500
        request_id_bytes = request_id.encode()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = with_edge_headers(message.get("headers", ()), request_id_bytes)
            await send(message)

        started = time.perf_counter()
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            if self.tracing.enabled:
                with self.tracing.server_span(method, {"http.request.method": method}) as span:
                    try:
                        await self.inner(scope, receive, send_with_headers)
                    finally:
                        route = _route(scope)
                        span.update_name(f"{method} {route}")
                        span.set_attribute("http.route", route)
                        span.set_attribute("http.response.status_code", status)
                        span.set_attribute("taskflow.request_id", request_id)
            else:
                await self.inner(scope, receive, send_with_headers)
        finally:
            self._record(method, _route(scope), status, time.perf_counter() - started)
            structlog.contextvars.reset_contextvars(**tokens)

    def _record(self, method: str, route: str, status: int, elapsed: float) -> None:
        counter = self._counted.get((method, route, status))
        if counter is None:
            counter = self._counted[(method, route, status)] = self.metrics.requests.labels(method, route, str(status))
        counter.inc()
        histogram = self._timed.get((method, route))
        if histogram is None:
            histogram = self._timed[(method, route)] = self.metrics.latency.labels(method, route)
        histogram.observe(elapsed)
        level = log.debug if route in QUIET_ROUTES else log.info
        level("request", method=method, route=route, status=status, duration_ms=round(elapsed * 1000, 2))

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The body limit: a declared Content-Length is checked up front and the body is then left
        to the server, which never delivers more than it declared; a body of unknown length
        (chunked) is read here, counting, before the app sees it."""
        if scope["method"] in NO_BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.max_bytes)
        declared = _declared_length(scope)
        if declared is not None:
            if declared > limit:
                await self._refuse(scope, receive, send, limit=limit, more=True)
            else:
                await self.app(scope, receive, send)
            return
        await self._buffered(scope, receive, send, limit=limit)

    async def _buffered(self, scope: Scope, receive: Receive, send: Send, *, limit: int) -> None:
        """A body of unknown length: read it whole, counting, then replay it to the app."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > limit:
                await self._refuse(scope, receive, send, limit=limit, more=more, read=size)
                return
            chunks.append(chunk)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, *, limit: int, more: bool, read: int = 0) -> None:
        while more and read <= limit * DRAIN_FACTOR:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            read += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = orjson.dumps(
            {
                "type": "urn:taskflow:problem:payload-too-large",
                "title": "Request body too large",
                "status": 413,
                "detail": f"the request body exceeds {limit} bytes",
                "instance": scope["path"],
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, unless the body is chunked (or the header is not a number)."""
    declared = None
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            declared = value
    return int(declared) if declared is not None and declared.isdigit() else None


def _route(scope: Scope) -> str:
    """The route template (never the raw path: a bounded metric label)."""
    return getattr(scope.get("route"), "path", None) or UNMATCHED
