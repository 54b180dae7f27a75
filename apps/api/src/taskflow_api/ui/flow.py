"""The dashboard's flow-control pages: queues (with pause and resume for admins) and limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response

from taskcore.flow import QUEUE_PATTERN
from taskflow_api.deps import FlowServiceDep
from taskflow_api.ui._session import Admin, Csrf, Viewer
from taskflow_api.ui.routes import _DashboardRoute, _remember, render

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=_DashboardRoute)

QueueName = Annotated[str, Path(pattern=QUEUE_PATTERN)]


@router.get("/queues", response_class=HTMLResponse)
async def queues_page(request: Request, principal: Viewer, flow: FlowServiceDep) -> Response:
    _remember(request, principal)
    queues = await flow.queues()
    stranded = [q.name for q in queues if q.due > 0 and q.workers == 0]
    return render(request, "queues.html", {"queues": queues, "stranded": stranded, "page": "queues"})


@router.post("/queues/{name}/pause")
async def pause(request: Request, name: QueueName, principal: Admin, _csrf: Csrf, flow: FlowServiceDep) -> Response:
    await flow.pause("queue", name)
    return RedirectResponse("/ui/queues", status_code=303)


@router.post("/queues/{name}/resume")
async def resume(request: Request, name: QueueName, principal: Admin, _csrf: Csrf, flow: FlowServiceDep) -> Response:
    await flow.resume("queue", name)
    return RedirectResponse("/ui/queues", status_code=303)


@router.get("/limits", response_class=HTMLResponse)
async def limits_page(request: Request, principal: Viewer, flow: FlowServiceDep) -> Response:
    _remember(request, principal)
    return render(request, "limits.html", {"limits": await flow.limits(), "page": "limits"})
