"""Who may call the API: scopes and the per-route dependency that checks them.

Every ``/api/v1`` route declares the scope it needs with ``dependencies=[require_scope(Scope.X)]``.
The checking itself lives in ``authenticate`` (API keys arrive with issue 3); until then every
caller is the anonymous principal holding all scopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import Depends, Request


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


def auth_enabled(request: Request) -> bool:
    """Whether callers must present a key (the dashboard asks for one only then)."""
    return False


async def principal_for_key(request: Request, raw_key: str) -> Principal | None:
    """The principal a raw API key stands for, or None if it is unknown (the dashboard's cookie)."""
    return None


async def authenticate(request: Request, scope: Scope) -> Principal:
    """The caller of ``request`` if it may use ``scope``; raises a problem (401/403) otherwise."""
    return ANONYMOUS


def require_scope(scope: Scope) -> Any:
    """A route dependency: ``dependencies=[require_scope(Scope.TASKS_WRITE)]``."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request, scope)
        request.state.principal = principal
        return principal

    return Depends(dependency)
