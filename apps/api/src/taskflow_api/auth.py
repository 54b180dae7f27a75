"""Who may call the API: API keys, scopes and the ``Authenticator`` that checks them.

Every ``/api/v1`` route declares the scope it needs with ``dependencies=[require_scope(Scope.X)]``
(``deps.py``).
A caller sends ``Authorization: Bearer <key>``. Keys are configured hashed (``TASKFLOW_API_KEYS``:
name, SHA-256 hex digest, scopes); a presented key is hashed and compared in constant time with
every configured digest. Keys are long random strings (see ``taskflow-api keygen``), so a fast
hash is enough: there is nothing to brute-force. With auth off (the development profile by
default) every caller is the anonymous principal holding all scopes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

import structlog
from fastapi import FastAPI, Request
from fastapi.security import HTTPBearer
from starlette.responses import Response

from taskcore.settings import ApiKeyEntry, Settings
from taskflow_api.problems import problem
from taskflow_api.schemas import Problem

log = structlog.get_logger("taskflow.api")


class Scope(StrEnum):
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a key's name (never the key) and what it may do."""

    name: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


ANONYMOUS = Principal("anonymous", frozenset(Scope))

# Declares the scheme in OpenAPI (securitySchemes + per-operation security); the checking is ours.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer <key>` (mint one with `taskflow-api keygen`).",
)


def hash_key(raw_key: str) -> str:
    """The SHA-256 hex digest configured for a key."""
    return hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).hexdigest()


class KeyRing:
    """The configured keys; ``find`` compares a presented key against all of them in constant time."""

    def __init__(self, entries: tuple[ApiKeyEntry, ...]) -> None:
        self._entries = [
            (bytes.fromhex(e.sha256), Principal(e.name, frozenset(Scope(s) for s in e.scopes))) for e in entries
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, raw_key: str) -> Principal | None:
        digest = hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for expected, principal in self._entries:  # no early exit: the time does not depend on which matched
            if hmac.compare_digest(digest, expected):
                found = principal
        return found


class AuthError(Exception):
    """401 (no or unknown key) or 403 (the key lacks the scope); the message never holds the key."""

    def __init__(self, status: int, detail: str, *, invalid_token: bool = False) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.invalid_token = invalid_token


class Authenticator:
    """Who a presented key stands for, given whether auth is on and the configured keys."""

    def __init__(self, settings: Settings) -> None:
        self.required = settings.auth_required
        self._keys = KeyRing(settings.api_keys)

    def principal_for_key(self, raw_key: str) -> Principal | None:
        """The principal a raw API key stands for, or None if it is unknown (the dashboard's cookie)."""
        if not self.required:
            return ANONYMOUS
        return self._keys.find(raw_key)

    def authenticate(self, authorization: str | None, scope: Scope, *, path: str) -> Principal:
        """The caller presenting the ``Authorization`` header if it may use ``scope``; AuthError (401/403) otherwise."""
        if not self.required:
            return ANONYMOUS
        raw_key = _bearer(authorization)
        if raw_key is None:
            raise AuthError(401, "an API key is required: send 'Authorization: Bearer <key>'")
        principal = self._keys.find(raw_key)
        if principal is None:
            raise AuthError(401, "the API key is not valid", invalid_token=True)
        if not principal.allows(scope):
            log.info("scope refused", key_name=principal.name, scope=scope.value, path=path)
            raise AuthError(403, f"the key '{principal.name}' lacks the scope '{scope.value}'")
        return principal


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise AuthError(401, "the Authorization header must be 'Bearer <key>'", invalid_token=True)
    return credentials.strip()


async def _auth_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    if exc.status == 401:
        challenge = 'Bearer realm="taskflow"' + (', error="invalid_token"' if exc.invalid_token else "")
        return problem(
            401,
            "unauthorized",
            "Authentication required",
            exc.detail,
            headers={"WWW-Authenticate": challenge},
            instance=request.url.path,
        )
    return problem(403, "forbidden", "Missing scope", exc.detail, instance=request.url.path)


UNAUTHORIZED_ANSWERS = {
    "401": {
        "description": "No API key, or not a valid one",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
        "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
    },
    "403": {
        "description": "The key lacks the scope this operation needs",
        "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
    },
}
"""What every operation that takes a key may answer besides its own responses (see ``openapi.py``)."""


def install(app: FastAPI) -> None:
    """Map AuthError to problem+json."""
    app.add_exception_handler(AuthError, _auth_problem)


def announce(settings: Settings) -> None:
    """One log line at start-up: loud when the API runs open or no key could ever be accepted."""
    if not settings.auth_required:
        log.warning(
            "!!! AUTHENTICATION IS OFF: anyone who can reach this API can submit, read and cancel tasks !!!",
            env=settings.env,
            hint="set TASKFLOW_AUTH_ENABLED=true and TASKFLOW_API_KEYS (taskflow-api keygen) outside development",
        )
    elif not settings.api_keys:
        log.warning("authentication is on but TASKFLOW_API_KEYS is empty: every /api/v1 call will get 401")
    else:
        log.info("authentication on", keys=[k.name for k in settings.api_keys])
