"""The dashboard at /ui: server-rendered pages over the same service and repository as the API."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from sse_starlette import EventSourceResponse
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from taskcore.domain import TaskStatus
from taskcore.errors import DependencyUnavailable, InvalidTransition, TaskNotFound, TaskValidationError
from taskcore.registry import TaskRegistry
from taskcore.service import TaskService
from taskcore.store.callbacks import DeliveryRepository
from taskcore.store.dashboard import Overview
from taskcore.store.history import task_history
from taskcore.store.repository import ListFilter, TaskRepository
from taskflow_api.auth import Scope
from taskflow_api.deps import AppState, AuthDep, RegistryDep, RepoDep, ServiceDep, StateDep, charge_submits, state_of
from taskflow_api.filters import MAX_PAYLOAD_FILTER_BYTES
from taskflow_api.live import HEARTBEAT_SECONDS, task_events
from taskflow_api.observability import actor_name, origin_of
from taskflow_api.problems import RETRY_AFTER_SECONDS
from taskflow_api.ratelimit import RateLimited
from taskflow_api.schemas import TaskTypeFilter
from taskflow_api.ui import _session as session
from taskflow_api.ui._session import Csrf, Viewer, Writer
from taskflow_api.ui.filters import bulk_offers, limit_key_filter, payload_from_text, payload_text, queue_filter
from taskflow_api.ui.forms import fields_for, task_from_form

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["json"] = lambda value: orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
templates.env.filters["ts"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"
templates.env.filters["ts_ms"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


class _DashboardRoute(APIRoute):
    """A dependency that is down gets a readable 503 page here, not the API's problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except DependencyUnavailable as exc:
                detail = f"{exc.dependency} is not answering. This page will work again once it is back."
                response = render(request, "error.html", {"title": "Unavailable", "detail": detail}, status_code=503)
                response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
                return response

        return handler


router = APIRouter(prefix="/ui", include_in_schema=False, route_class=_DashboardRoute)
STATUSES = list(TaskStatus)


def render(request: Request, name: str, context: dict[str, Any], *, status_code: int = 200) -> Response:
    principal = getattr(request.state, "ui_principal", None)
    base = {
        "csrf": session.csrf_token(request),
        "auth_on": state_of(request).auth.required,
        "principal": principal,
        "can_write": principal is not None and principal.allows(Scope.TASKS_WRITE),
        "can_admin": principal is not None and principal.allows(Scope.ADMIN),
    }
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)
    session.issue_csrf(request, response)
    response.headers["Cache-Control"] = "no-store"
    return response


def _remember(request: Request, principal: Any) -> None:
    request.state.ui_principal = principal


# -- login ---------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/ui/") -> Response:
    return render(request, "login.html", {"next": _local(next), "error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    auth: AuthDep,
    _csrf: Csrf,
    api_key: Annotated[str, Form(max_length=512)] = "",
    next: str = Form("/ui/"),
) -> Response:
    principal = auth.principal_for_key(api_key.strip()) if api_key.strip() else None
    if principal is None:
        return render(request, "login.html", {"next": _local(next), "error": "That key is not valid."}, status_code=401)
    response = RedirectResponse(_local(next), status_code=303)
    session.set_cookie(request, response, session.KEY_COOKIE, api_key.strip())
    session.set_cookie(request, response, session.CSRF_COOKIE, session.new_token())
    return response


@router.post("/logout")
async def logout(request: Request, auth: AuthDep, _csrf: Csrf) -> Response:
    response = RedirectResponse("/ui/login" if auth.required else "/ui/", status_code=303)
    session.clear_cookie(request, response, session.KEY_COOKIE)
    session.clear_cookie(request, response, session.CSRF_COOKIE)
    return response


def _local(target: str) -> str:
    """Only redirect within the dashboard (no open redirect)."""
    return target if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target else "/ui/"


# -- overview --------------------------------------------------------------------------------


async def _overview(state: AppState) -> dict[str, Any]:
    lease_seconds = state.settings.lease_seconds
    overview = await state.dashboard.overview()
    stats = await state.repo.queue_stats(worker_seen_within=timedelta(seconds=lease_seconds * 2))
    return overview_json(overview, stats, lease_seconds)


def overview_json(overview: Overview, stats: Any, lease_seconds: float) -> dict[str, Any]:
    start = overview.now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    by_minute = {b.minute: b for b in overview.last_hour}
    minutes = []
    for i in range(60):
        moment = start + timedelta(minutes=i)
        bucket = by_minute.get(moment)
        minutes.append(
            {
                "minute": moment.isoformat(),
                "succeeded": bucket.succeeded if bucket else 0,
                "failed": bucket.failed if bucket else 0,
                "cancelled": bucket.cancelled if bucket else 0,
            }
        )
    rate = overview.failure_rate_last_hour
    return {
        "counts": {s.value: n for s, n in overview.counts.items()},
        "total": sum(overview.counts.values()),
        "due": stats.due,
        "oldest_due_age_seconds": stats.oldest_due_age_seconds,
        "finished_last_hour": overview.finished_last_hour,
        "failure_rate_last_hour": rate,
        "minutes": minutes,
        "by_type": [
            {
                "task_type": t.task_type,
                "succeeded": t.succeeded,
                "failed": t.failed,
                "cancelled": t.cancelled,
                "per_minute": round(t.per_minute, 2),
                "failure_rate": t.failure_rate,
            }
            for t in overview.by_type
        ],
        "workers": [
            {
                "id": w.id,
                "hostname": w.hostname,
                "pid": w.pid,
                "concurrency": w.concurrency,
                "last_seen_at": w.last_seen_at.isoformat(),
                "seconds_since_seen": round(w.seconds_since_seen, 1),
                "alive": w.seconds_since_seen <= lease_seconds * 2,
            }
            for w in overview.workers
        ],
    }


@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request, principal: Viewer, state: StateDep) -> Response:
    _remember(request, principal)
    data = await _overview(state)
    return render(request, "overview.html", {"data": data, "statuses": STATUSES, "page": "overview"})


@router.get("/overview.json")
async def overview_data(principal: Viewer, state: StateDep) -> Response:
    return JSONResponse(await _overview(state), headers={"Cache-Control": "no-store"})


# -- tasks --------------------------------------------------------------------------------------


async def _task_page(repo: TaskRepository, filters: ListFilter, limit: int, cursor: str | None) -> dict[str, Any]:
    error = None
    try:
        page = await repo.list_page(filters, limit=limit, cursor=cursor)
        items, next_cursor = page.items, page.next_cursor
    except TaskValidationError as exc:
        items, next_cursor, error = [], None, str(exc)
    return {
        "tasks": items,
        "next_cursor": next_cursor,
        "cursor": cursor,
        "filters": _form_values(filters, limit),
        "query": _query_of(filters, limit),
        "error": error,
    }


def _form_values(filters: ListFilter, limit: int) -> dict[str, Any]:
    """The filter form's inputs, as the browser shows them."""
    after, before = filters.created_after, filters.created_before
    return {
        "statuses": {s.value for s in filters.statuses},
        "task_type": filters.task_type or "",
        "queue": filters.queue or "",
        "limit_key": filters.limit_key or "",
        "payload": payload_text(filters.payload),
        "limit": limit,
        "created_after": after.strftime("%Y-%m-%dT%H:%M:%S") if after else "",
        "created_before": before.strftime("%Y-%m-%dT%H:%M:%S") if before else "",
        "batch_id": str(filters.batch_id) if filters.batch_id else "",
    }


def _query_of(filters: ListFilter, limit: int) -> list[tuple[str, str]]:
    """The list's query string without the cursor (the next page's link adds it)."""
    query: list[tuple[str, str]] = [("status", s.value) for s in filters.statuses]
    if filters.task_type:
        query.append(("task_type", filters.task_type))
    if filters.created_after:
        query.append(("created_after", filters.created_after.isoformat()))
    if filters.created_before:
        query.append(("created_before", filters.created_before.isoformat()))
    if filters.queue:
        query.append(("queue", filters.queue))
    if filters.limit_key:
        query.append(("limit_key", filters.limit_key))
    if filters.payload:
        query.append(("payload", payload_text(filters.payload)))
    if filters.schedule_id:
        query.append(("schedule_id", str(filters.schedule_id)))
    if filters.batch_id:
        query.append(("batch_id", str(filters.batch_id)))
    query.append(("limit", str(limit)))
    return query


def _moment(text: str) -> datetime | None:
    """A time from the filter form: RFC 3339, or a browser's datetime-local value taken as UTC."""
    if not text.strip():
        return None
    parsed = datetime.fromisoformat(text.strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


Statuses = Annotated[list[TaskStatus], Query(alias="status")]


@router.get("/tasks", response_class=HTMLResponse)
async def tasks_page(
    request: Request,
    principal: Viewer,
    state: StateDep,
    status_: Statuses = [],  # noqa: B006
    task_type: TaskTypeFilter = None,
    created_after: Annotated[str, Query(max_length=64)] = "",
    created_before: Annotated[str, Query(max_length=64)] = "",
    queue: Annotated[str, Query(max_length=100)] = "",
    limit_key: Annotated[str, Query(max_length=200)] = "",
    payload: Annotated[str, Query(max_length=MAX_PAYLOAD_FILTER_BYTES)] = "",
    schedule_id: UUID | None = None,
    batch_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    fragment: bool = False,
) -> Response:
    _remember(request, principal)
    filters, errors = list_filter_of(status_, task_type, created_after, created_before, queue, limit_key, payload)
    filters = dataclasses.replace(filters, schedule_id=schedule_id, batch_id=batch_id)
    context = await _task_page(state.repo, filters, limit, cursor)
    if errors:
        context["error"] = " ".join(errors)
    context.update({"types": [t.name for t in state.registry], "statuses": STATUSES, "page": "tasks"})
    if not fragment:
        context["bulk"] = await bulk_offers(request, state, filters)
    return render(request, "_rows.html" if fragment else "tasks.html", context)


def list_filter_of(
    statuses: list[TaskStatus],
    task_type: str | None,
    created_after: str,
    created_before: str,
    queue: str,
    limit_key: str,
    payload: str,
) -> tuple[ListFilter, list[str]]:
    """The list's filter from the form (the list page and the bulk pages); what was not understood."""
    errors: list[str] = []
    try:
        after, before = _moment(created_after), _moment(created_before)
    except ValueError:
        after = before = None
        errors.append("Created after/before must be a date and time, e.g. 2026-11-28T14:00 (UTC).")
    queue_name, queue_error = queue_filter(queue)
    key, key_error = limit_key_filter(limit_key)
    errors += [e for e in (queue_error, key_error) if e]
    try:
        contains = payload_from_text(payload)
    except TaskValidationError as exc:
        contains = None
        errors.append(f"Payload: {exc.errors[0]['message']}.")
    filters = ListFilter(
        statuses=statuses,
        task_type=task_type or None,
        created_after=after,
        created_before=before,
        queue=queue_name,
        limit_key=key,
        payload=contains,
    )
    return filters, errors


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(
    request: Request, task_id: UUID, principal: Viewer, repo: RepoDep, fragment: bool = False
) -> Response:
    _remember(request, principal)
    try:
        task = await repo.get(task_id)
        history = await task_history(repo.pool, task_id)
    except TaskNotFound:
        return _not_found(request, task_id)
    context = {"task": task, "page": "tasks", "terminal": task.status.terminal, "history": history}
    if task.callback_url is not None:  # a task without a callback costs no query
        context["deliveries"] = await DeliveryRepository(repo.pool).for_task(task.id)
    return render(request, "_task.html" if fragment else "task.html", context)


@router.get("/tasks/{task_id}/events")
async def task_page_events(task_id: UUID, principal: Viewer, state: StateDep) -> Response:
    """The task's state changes for its page (same stream as the API's /events, with the cookie)."""
    stream = task_events(state.listener, state.repo, task_id)
    try:
        first = await anext(stream)
    except TaskNotFound:
        return Response(status_code=404)

    async def events() -> Any:
        try:
            yield first
            async for event in stream:
                yield event
        finally:
            await stream.aclose()

    return EventSourceResponse(events(), ping=HEARTBEAT_SECONDS, headers={"Cache-Control": "no-store"})


@router.post("/tasks/{task_id}/cancel")
async def cancel(request: Request, task_id: UUID, principal: Writer, _csrf: Csrf, service: ServiceDep) -> Response:
    return await _act(request, service, task_id, "cancel", actor_name("dashboard", principal.name))


@router.post("/tasks/{task_id}/retry")
async def retry(request: Request, task_id: UUID, principal: Writer, _csrf: Csrf, service: ServiceDep) -> Response:
    return await _act(request, service, task_id, "retry", actor_name("dashboard", principal.name))


async def _act(request: Request, service: TaskService, task_id: UUID, action: str, actor: str) -> Response:
    try:
        await (service.cancel(task_id, actor=actor) if action == "cancel" else service.retry(task_id, actor=actor))
    except TaskNotFound:
        return _not_found(request, task_id)
    except InvalidTransition as exc:
        return render(request, "error.html", {"title": f"Cannot {action}", "detail": str(exc)}, status_code=409)
    return RedirectResponse(f"/ui/tasks/{task_id}", status_code=303)


# -- submit ---------------------------------------------------------------------------------------


@router.get("/submit", response_class=HTMLResponse)
async def submit_page(
    request: Request, principal: Viewer, registry: RegistryDep, task_type: str | None = None
) -> Response:
    _remember(request, principal)
    return _submit_form(request, registry, task_type, {}, [])


def _not_found(request: Request, task_id: UUID) -> Response:
    return render(request, "error.html", {"title": "Task not found", "detail": f"No task {task_id}."}, status_code=404)


def _submit_form(
    request: Request,
    registry: TaskRegistry,
    task_type: str | None,
    values: dict[str, str],
    errors: list[dict[str, Any]],
    status_code: int = 200,
) -> Response:
    names = [t.name for t in registry]
    chosen = task_type if task_type in names else (names[0] if names else None)
    spec = registry.get(chosen) if chosen else None
    fields = fields_for(spec.json_schema()) if spec else []
    by_field: dict[str, list[str]] = {}
    for error in errors:
        by_field.setdefault(str(error.get("field", "")), []).append(str(error.get("message", "")))
    context = {
        "types": list(registry),
        "chosen": chosen,
        "description": spec.description if spec else "",
        "fields": fields,
        "values": values,
        "errors": errors,
        "field_errors": by_field,
        "page": "submit",
    }
    return render(request, "submit.html", context, status_code=status_code)


@router.post("/submit", response_class=HTMLResponse)
async def submit(request: Request, principal: Writer, _csrf: Csrf, state: StateDep) -> Response:
    _remember(request, principal)
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    task_type = values.get("task_type", "")
    if task_type not in state.registry:
        unknown = [{"field": "task_type", "message": "unknown task type"}]
        return _submit_form(request, state.registry, None, values, unknown, 422)
    body, errors = task_from_form(state.registry.get(task_type), form)
    if body is None:
        return _submit_form(request, state.registry, task_type, values, errors, 422)
    request.state.principal = principal  # the key behind the cookie pays for the submit, as over the API
    try:
        await charge_submits(request, 1)
        origin = dataclasses.replace(origin_of(request, state.tracing), actor=actor_name("dashboard", principal.name))
        task, _ = await state.service.submit(body.to_request(), origin=origin)
    except RateLimited as exc:
        message = f"this key's submit rate limit is used up: try again in {exc.retry_after_seconds} s"
        limited = _submit_form(
            request, state.registry, task_type, values, [{"field": "task_type", "message": message}], 429
        )
        limited.headers["Retry-After"] = str(exc.retry_after_seconds)
        return limited
    except TaskValidationError as exc:
        return _submit_form(request, state.registry, task_type, values, exc.errors, 422)
    return RedirectResponse(f"/ui/tasks/{task.id}", status_code=303)
