"""The dashboard's batch page: a batch's counts by status, a progress bar, its on_complete task
and a link to its tasks; app.js re-fetches the fragment until the batch has finished."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from taskcore.domain import TaskStatus
from taskcore.errors import BatchNotFound
from taskcore.store.batches import BatchRepository
from taskflow_api.deps import RepoDep
from taskflow_api.ui._session import Viewer
from taskflow_api.ui.routes import _DashboardRoute, _remember, render

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=_DashboardRoute)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
async def batch_page(
    request: Request, batch_id: UUID, principal: Viewer, repo: RepoDep, fragment: bool = False
) -> Response:
    _remember(request, principal)
    try:
        batch = await BatchRepository(repo.pool).get(batch_id)
    except BatchNotFound:
        return render(
            request, "error.html", {"title": "Batch not found", "detail": f"No batch {batch_id}."}, status_code=404
        )
    ended = sum(n for s, n in batch.counts.items() if s.terminal)
    context = {
        "batch": batch,
        "ended": ended,
        "percent": 100 if batch.total == 0 else round(100 * ended / batch.total),
        "statuses": list(TaskStatus),
        "page": "tasks",
        # Finished and its on_complete (if any) ended: nothing will change by itself.
        "settled": batch.finished
        and (batch.on_complete_task_id is None or bool(batch.on_complete_status and batch.on_complete_status.terminal)),
    }
    return render(request, "_batch.html" if fragment else "batch.html", context)
