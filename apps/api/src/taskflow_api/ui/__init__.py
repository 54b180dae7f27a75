"""The web dashboard at /ui (server-rendered; a little of the project's own JS and CSS)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from taskflow_api.ui import bulk, schedules
from taskflow_api.ui._session import AdminRequired, CsrfRejected, Forbidden, LoginRequired
from taskflow_api.ui.batches import router as batches_router
from taskflow_api.ui.flow import router as flow_router
from taskflow_api.ui.routes import render, router
from taskflow_api.ui.workflows import router as workflows_router

STATIC = Path(__file__).parent / "static"


async def _login_required(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


async def _forbidden(request: Request, exc: Exception) -> Response:
    detail = "Your API key does not have the tasks:write scope needed for this action."
    if isinstance(exc, AdminRequired):
        detail = "Your API key does not have the admin scope needed to pause or resume a queue."
    if isinstance(exc, CsrfRejected):
        detail = "The form was stale or came from another site. Reload the page and try again."
    return render(request, "error.html", {"title": "Not allowed", "detail": detail}, status_code=403)


def install(app: FastAPI) -> None:
    app.include_router(bulk.router)  # before the router: /ui/bulk/... is its own
    app.include_router(router)
    app.include_router(schedules.router)
    app.include_router(flow_router)
    app.include_router(workflows_router)
    app.include_router(batches_router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(CsrfRejected, _forbidden)

    @app.get("/ui", include_in_schema=False)
    async def _ui_root() -> Response:
        return RedirectResponse("/ui/", status_code=307)
