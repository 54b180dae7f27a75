"""Typed errors, built from the API's problem+json answers (RFC 9457).

TaskflowError
├── TransportError          — no answer: connection refused, timeout, broken stream
└── APIError                — an answer with an error status; ``problem`` holds its body
    ├── BadRequest          400 (malformed JSON)
    ├── Unauthorized        401
    ├── Forbidden           403
    ├── NotFound            404
    ├── Conflict            409 (invalid transition, Idempotency-Key reused)
    ├── PayloadTooLarge     413
    ├── ValidationFailed    422 — ``errors`` names each bad field
    ├── RateLimited         429 — ``retry_after`` seconds
    ├── Unavailable         503 — ``retry_after`` seconds
    └── ServerError         other 5xx
"""

from __future__ import annotations

from typing import Any

import httpx


class TaskflowError(Exception):
    """Base class of every error this client raises."""


class TransportError(TaskflowError):
    """The API did not answer (connection refused, timeout, stream cut)."""


class APIError(TaskflowError):
    status: int = 0

    def __init__(self, status: int, problem: dict[str, Any], *, retry_after: float | None = None) -> None:
        self.status = status
        self.problem = problem
        self.title: str = str(problem.get("title", ""))
        self.detail: str = str(problem.get("detail", ""))
        self.type: str = str(problem.get("type", ""))
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.retry_after = retry_after
        super().__init__(f"{status} {self.title}: {self.detail}" if self.detail else f"{status} {self.title}")


class BadRequest(APIError):
    pass


class Unauthorized(APIError):
    pass


class Forbidden(APIError):
    pass


class NotFound(APIError):
    pass


class Conflict(APIError):
    pass


class PayloadTooLarge(APIError):
    pass


class ValidationFailed(APIError):
    @property
    def fields(self) -> list[str]:
        """The names of the fields the API refused (``payload.seconds``, ``priority``, …)."""
        return [str(e.get("field", "")) for e in self.errors]


class RateLimited(APIError):
    pass


class Unavailable(APIError):
    pass


class ServerError(APIError):
    pass


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
    503: Unavailable,
}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from this API; fall back to the client's backoff


def error_from_response(response: httpx.Response) -> APIError:
    """The typed error for an error answer, with the problem body (or a stand-in for a non-JSON one)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"title": response.reason_phrase or "error", "status": response.status_code, "detail": response.text}
    kind = _BY_STATUS.get(response.status_code)
    if kind is None:
        kind = ServerError if response.status_code >= 500 else APIError
    return kind(response.status_code, body, retry_after=_retry_after(response))
