"""Security headers on every response, API JSON and HTML alike (a pure ASGI middleware).

JSON and other non-HTML answers get a Content-Security-Policy that allows nothing; HTML pages
(``/docs``, the dashboard under ``/ui``) only get ``frame-ancestors 'none'`` so their own
scripts and styles keep working; a page that sets its own CSP keeps it. API answers are never
cached (``Cache-Control: no-store``) unless the route set a Cache-Control itself.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CSP_DATA = "default-src 'none'; frame-ancestors 'none'"
CSP_HTML = "frame-ancestors 'none'"
NO_STORE_TYPES = ("application/json", "application/problem+json")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers.setdefault(name, value)
                content_type = headers.get("content-type", "")
                html = content_type.startswith("text/html")
                headers.setdefault("Content-Security-Policy", CSP_HTML if html else CSP_DATA)
                if content_type.startswith(NO_STORE_TYPES):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
