"""Who may call the API: API keys, scopes and the per-route dependency that checks them.

Every ``/api/v1`` route declares the scope it needs with ``dependencies=[require_scope(Scope.X)]``.
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
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
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


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def auth_enabled(request: Request) -> bool:
    """Whether callers must present a key (the dashboard asks for one only then)."""
    return _settings(request).auth_required


async def principal_for_key(request: Request, raw_key: str) -> Principal | None:
    """The principal a raw API key stands for, or None if it is unknown (the dashboard's cookie)."""
    if not auth_enabled(request):
        return ANONYMOUS
    keys: KeyRing = request.app.state.api_keys
    return keys.find(raw_key)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise AuthError(401, "the Authorization header must be 'Bearer <key>'", invalid_token=True)
    return credentials.strip()


async def authenticate(request: Request, scope: Scope) -> Principal:
    """The caller of ``request`` if it may use ``scope``; raises a problem (401/403) otherwise."""
    if not auth_enabled(request):
        return ANONYMOUS
    raw_key = _bearer(request)
    if raw_key is None:
        raise AuthError(401, "an API key is required: send 'Authorization: Bearer <key>'")
    principal = await principal_for_key(request, raw_key)
    if principal is None:
        raise AuthError(401, "the API key is not valid", invalid_token=True)
    if not principal.allows(scope):
        log.info("scope refused", key_name=principal.name, scope=scope.value, path=request.url.path)
        raise AuthError(403, f"the key '{principal.name}' lacks the scope '{scope.value}'")
    return principal


def require_scope(scope: Scope) -> Any:
    """A route dependency: ``dependencies=[require_scope(Scope.TASKS_WRITE)]``."""

    async def dependency(
        request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
    ) -> Principal:
        principal = await authenticate(request, scope)
        request.state.principal = principal
        return principal

    return Depends(dependency)


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


def _document_problems(app: FastAPI) -> None:
    """Every operation that takes a key may answer 401 and 403: say so in OpenAPI."""
    build = app.openapi
    content = {"application/problem+json": {"schema": Problem.model_json_schema()}}
    answers = {
        "401": {
            "description": "No API key, or not a valid one",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
            "content": content,
        },
        "403": {"description": "The key lacks the scope this operation needs", "content": content},
    }

    def openapi() -> dict[str, Any]:
        schema = build()
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                if isinstance(operation, dict) and operation.get("security"):
                    for code, answer in answers.items():
                        operation.setdefault("responses", {}).setdefault(code, answer)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI, settings: Settings) -> None:
    """Load the keys, map AuthError to problem+json and document 401/403 in OpenAPI."""
    app.state.api_keys = KeyRing(settings.api_keys)
    app.add_exception_handler(AuthError, _auth_problem)
    _document_problems(app)


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
