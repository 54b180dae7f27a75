"""The dashboard's bulk actions: "Retry all N matching" / "Cancel all N matching" on the task list
lead here — a confirmation showing the exact count (a dry run), then the action's own page,
which follows its progress until it has finished. Admin only, as over the API."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response

from taskcore.bulk import BulkService
from taskcore.domain import TaskStatus
from taskcore.store.bulk import ACTIONS, BulkNotFound, BulkRepository
from taskcore.store.repository import ListFilter
from taskflow_api.auth import Scope
from taskflow_api.deps import StateDep
from taskflow_api.filters import MAX_PAYLOAD_FILTER_BYTES
from taskflow_api.schemas import TaskTypeFilter
from taskflow_api.ui._session import Csrf, Viewer
from taskflow_api.ui.filters import bulk_filter, payload_text
from taskflow_api.ui.routes import _DashboardRoute, list_filter_of, render

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=_DashboardRoute)

Statuses = Annotated[list[TaskStatus], Query(alias="status")]
FormStatuses = Annotated[list[TaskStatus], Form(alias="status")]
Short = Annotated[str, Query(max_length=200)]
FormShort = Annotated[str, Form(max_length=200)]


def _refused(request: Request, title: str, detail: str, status_code: int) -> Response:
    return render(request, "error.html", {"title": title, "detail": detail}, status_code=status_code)


def _not_admin(request: Request, principal: Any) -> Response | None:
    request.state.ui_principal = principal
    if principal.allows(Scope.ADMIN):
        return None
    return _refused(request, "Not allowed", "Bulk actions need an API key with the admin scope.", 403)


def _fields(filters: ListFilter) -> list[tuple[str, str]]:
    """The filter as hidden form fields (and the list's query string)."""
    fields = [("status", s.value) for s in filters.statuses]
    for name in ("task_type", "queue", "limit_key"):
        value = getattr(filters, name)
        if value:
            fields.append((name, value))
    if filters.created_after:
        fields.append(("created_after", filters.created_after.isoformat()))
    if filters.created_before:
        fields.append(("created_before", filters.created_before.isoformat()))
    if filters.payload:
        fields.append(("payload", payload_text(filters.payload)))
    return fields


@router.get("/bulk/confirm", response_class=HTMLResponse)
async def confirm(
    request: Request,
    principal: Viewer,
    state: StateDep,
    action: Annotated[str, Query(max_length=20)] = "",
    status_: Statuses = [],  # noqa: B006
    task_type: TaskTypeFilter = None,
    created_after: Short = "",
    created_before: Short = "",
    queue: Short = "",
    limit_key: Short = "",
    payload: Annotated[str, Query(max_length=MAX_PAYLOAD_FILTER_BYTES)] = "",
) -> Response:
    refused = _not_admin(request, principal)
    if refused is not None:
        return refused
    filters, errors = list_filter_of(status_, task_type, created_after, created_before, queue, limit_key, payload)
    narrowed = bulk_filter(action, filters) if action in ACTIONS else None
    if errors or narrowed is None:
        detail = " ".join(errors) or f"{action or 'That action'} does not apply to the tasks shown."
        return _refused(request, "Cannot do that", detail, 422)
    matched = await BulkService(store=BulkRepository(state.repo.pool)).count(action, narrowed)
    context = {"action": action, "matched": matched, "fields": _fields(narrowed), "page": "tasks"}
    return render(request, "bulk_confirm.html", context)


@router.post("/bulk")
async def start(
    request: Request,
    principal: Viewer,
    _csrf: Csrf,
    state: StateDep,
    action: Annotated[str, Form(max_length=20)] = "",
    status_: FormStatuses = [],  # noqa: B006
    task_type: FormShort = "",
    created_after: FormShort = "",
    created_before: FormShort = "",
    queue: FormShort = "",
    limit_key: FormShort = "",
    payload: Annotated[str, Form(max_length=MAX_PAYLOAD_FILTER_BYTES)] = "",
) -> Response:
    refused = _not_admin(request, principal)
    if refused is not None:
        return refused
    filters, errors = list_filter_of(status_, task_type, created_after, created_before, queue, limit_key, payload)
    narrowed = bulk_filter(action, filters) if action in ACTIONS else None
    if errors or narrowed is None:
        return _refused(request, "Cannot do that", " ".join(errors) or "That action does not apply.", 422)
    doc = dict(_fields(narrowed))
    doc.pop("status", None)
    if narrowed.statuses:
        doc["status"] = [s.value for s in narrowed.statuses]  # type: ignore[assignment]
    bulk = await BulkService(store=BulkRepository(state.repo.pool)).start(
        action, narrowed, filter_doc=doc, actor=principal.name
    )
    return RedirectResponse(f"/ui/bulk/{bulk.id}", status_code=303)


@router.get("/bulk/{bulk_id}", response_class=HTMLResponse)
async def show(request: Request, bulk_id: UUID, principal: Viewer, state: StateDep) -> Response:
    refused = _not_admin(request, principal)
    if refused is not None:
        return refused
    try:
        bulk = await BulkRepository(state.repo.pool).get(bulk_id)
    except BulkNotFound:
        return _refused(request, "Bulk action not found", f"No bulk action {bulk_id}.", 404)
    return render(request, "bulk.html", {"bulk": bulk, "page": "tasks"})
