"""The dashboard's schedules page: next runs, latest runs with their status, pause/resume/trigger.

Acting on a schedule needs the ``admin`` scope, as over the API."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response

from taskcore.errors import ScheduleNotFound
from taskflow_api.auth import Principal, Scope
from taskflow_api.deps import SchedulesDep
from taskflow_api.ui._session import Csrf, Viewer, Writer
from taskflow_api.ui.routes import _DashboardRoute, render

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=_DashboardRoute)


@router.get("/schedules", response_class=HTMLResponse)
async def schedules_page(request: Request, principal: Viewer, schedules: SchedulesDep) -> Response:
    request.state.ui_principal = principal
    items = await schedules.repo.list(last_runs=5)
    context = {"schedules": items, "page": "schedules", "can_admin": principal.allows(Scope.ADMIN)}
    return render(request, "schedules.html", context)


@router.post("/schedules/{schedule_id}/{action}")
async def act(
    request: Request, schedule_id: UUID, action: str, principal: Writer, _csrf: Csrf, schedules: SchedulesDep
) -> Response:
    request.state.ui_principal = principal
    if not _admin(principal):
        detail = "Your API key does not have the admin scope that schedules need."
        return render(request, "error.html", {"title": "Not allowed", "detail": detail}, status_code=403)
    try:
        if action == "pause":
            await schedules.pause(schedule_id)
        elif action == "resume":
            await schedules.resume(schedule_id)
        elif action == "trigger":
            task = await schedules.trigger(schedule_id)
            return RedirectResponse(f"/ui/tasks/{task.id}", status_code=303)
        else:
            return render(request, "error.html", {"title": "Unknown action", "detail": action}, status_code=404)
    except ScheduleNotFound as exc:
        return render(request, "error.html", {"title": "Schedule not found", "detail": str(exc)}, status_code=404)
    return RedirectResponse("/ui/schedules", status_code=303)


def _admin(principal: Principal) -> bool:
    return principal.allows(Scope.ADMIN)
