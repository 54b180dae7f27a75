"""The dashboard's session: the API key in an HttpOnly cookie, and a CSRF token for its forms.

When auth is on, the login form's key is checked with ``Authenticator.principal_for_key`` and kept
in the ``taskflow_key`` cookie (HttpOnly, SameSite=Strict, Secure over https, Path=/ui), so page
scripts never see it and other sites cannot send it. Every form also carries a per-session
token that must match the ``taskflow_csrf`` cookie (double submit); it is rotated at login.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Form, Request
from starlette.responses import Response

from taskflow_api.auth import ANONYMOUS, Principal, Scope
from taskflow_api.deps import AuthDep

KEY_COOKIE = "taskflow_key"
CSRF_COOKIE = "taskflow_csrf"
COOKIE_PATH = "/ui"
SESSION_SECONDS = 12 * 3600


class LoginRequired(Exception):
    """No valid key in the cookie while auth is on: go to the login page."""


class Forbidden(Exception):
    """The key lacks the scope an action needs."""


class AdminRequired(Forbidden):
    """The key lacks the admin scope (pausing a queue)."""


class CsrfRejected(Exception):
    """A form without the session's CSRF token."""


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(request: Request) -> str:
    """This session's token (a new one is issued with the response when there is none yet)."""
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not token:
        token = new_token()
        request.state.new_csrf = token
    return str(token)


def issue_csrf(request: Request, response: Response) -> None:
    new = getattr(request.state, "new_csrf", None)
    if new:
        set_cookie(request, response, CSRF_COOKIE, new)


async def current_principal(request: Request, auth: AuthDep) -> Principal:
    """Who is using the dashboard; LoginRequired when auth is on and the cookie holds no valid key."""
    if not auth.required:
        return ANONYMOUS
    key = request.cookies.get(KEY_COOKIE)
    principal = auth.principal_for_key(key) if key else None
    if principal is None:
        raise LoginRequired
    if not principal.allows(Scope.TASKS_READ):
        raise Forbidden
    return principal


async def check_csrf(request: Request, csrf: Annotated[str, Form()] = "") -> None:
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf.encode()):
        raise CsrfRejected


async def writer(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """A principal allowed to act (submit, cancel, retry)."""
    if not principal.allows(Scope.TASKS_WRITE):
        raise Forbidden
    return principal


async def admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """A principal allowed to change flow control (pause and resume queues)."""
    if not principal.allows(Scope.ADMIN):
        raise AdminRequired
    return principal


Viewer = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(admin)]
Writer = Annotated[Principal, Depends(writer)]
Csrf = Annotated[None, Depends(check_csrf)]
