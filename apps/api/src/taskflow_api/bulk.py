"""API v1 bulk actions: ``POST /api/v1/bulk`` (retry or cancel every task a filter matches, or count
them with ``dry_run``) and ``GET /api/v1/bulk/{id}`` (progress and outcome counts). Scope admin.

The work runs in the workers (taskcore/bulk.py), chunk by chunk; this module validates, counts or
starts, and reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from taskcore.bulk import BulkService
from taskcore.domain import TaskStatus
from taskcore.flow import LIMIT_KEY_PATTERN, QUEUE_PATTERN
from taskcore.store.bulk import BulkAction, BulkNotFound, BulkRepository
from taskcore.store.repository import ListFilter
from taskflow_api._strict_json import StrictJSONRoute
from taskflow_api.auth import Scope
from taskflow_api.deps import StateDep, require_scope
from taskflow_api.filters import PayloadDocument
from taskflow_api.problems import problem, problem_responses
from taskflow_api.schemas import UtcDatetime

router = APIRouter(prefix="/api/v1", route_class=StrictJSONRoute, tags=["bulk actions"])

Text = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class BulkFilter(BaseModel):
    """The task list's filters (GET /api/v1/tasks), plus error_type. Every given filter must match.

    A new filter is a field here, one line in ``to_filter`` and a field and line in
    taskcore.store.repository (ListFilter, _CONDITIONS)."""

    model_config = ConfigDict(extra="forbid")

    status: list[TaskStatus] = Field(
        default_factory=list,
        max_length=len(TaskStatus),
        description="Any of these; default: every state the action applies to (retry: failed, cancelled; "
        "cancel: scheduled, queued, running)",
    )
    task_type: Text | None = None
    created_after: UtcDatetime | None = None
    created_before: UtcDatetime | None = None
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    limit_key: str | None = Field(default=None, pattern=LIMIT_KEY_PATTERN, description="Tasks naming this limit key")
    error_type: Text | None = Field(default=None, description="The error.type of the task's last failed attempt")
    payload: PayloadDocument = Field(default=None, description="A JSON object the payload must contain")
    schedule_id: UUID | None = Field(default=None, description="Runs of this schedule")
    workflow_id: UUID | None = Field(default=None, description="Steps of this workflow")

    def to_filter(self) -> ListFilter:
        return ListFilter(
            statuses=self.status,
            task_type=self.task_type,
            created_after=self.created_after,
            created_before=self.created_before,
            queue=self.queue,
            limit_key=self.limit_key,
            error_type=self.error_type,
            schedule_id=self.schedule_id,
            workflow_id=self.workflow_id,
            payload=self.payload,
        )


class BulkIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"action": "retry", "filter": {"status": ["failed"], "task_type": "email"}, "dry_run": True}]
        },
    )

    action: Literal["retry", "cancel"]
    filter: BulkFilter = Field(default_factory=BulkFilter)
    dry_run: bool = Field(default=False, description="Only count the tasks it would act on")


class BulkCount(BaseModel):
    matched: int = Field(description="Tasks the action would act on now")
    dry_run: bool = True


class BulkOut(BaseModel):
    id: UUID
    action: str
    filter: dict[str, Any]
    status: Literal["running", "finished"]
    matched: int = Field(description="Tasks matched when it started: what it acts on")
    done: int = Field(description="Tasks processed so far (succeeded + skipped + failed)")
    succeeded: int = Field(description="Tasks retried or cancelled (a running one: cancel requested)")
    skipped: int = Field(description="Tasks whose state changed since the match: left alone")
    failed: int = Field(description="Tasks that could not be acted on (deleted since the match)")
    actor: str | None = Field(description="The API key that started it")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, bulk: BulkAction) -> BulkOut:
        return cls.model_validate(bulk, from_attributes=True)


def _service(state: StateDep) -> BulkService:
    return BulkService(store=BulkRepository(state.repo.pool))


@router.post(
    "/bulk",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BulkOut,
    responses={200: {"model": BulkCount, "description": "dry_run: the count only"}, **problem_responses(400, 422, 503)},
    summary="Retry or cancel every task a filter matches (or count them)",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def start_bulk(body: BulkIn, state: StateDep, request: Request) -> Response:
    service = _service(state)
    filters = body.filter.to_filter()
    if body.dry_run:
        matched = await service.count(body.action, filters)
        return Response(BulkCount(matched=matched).model_dump_json(), media_type="application/json")
    principal = getattr(request.state, "principal", None)
    bulk = await service.start(
        body.action,
        filters,
        filter_doc=body.filter.model_dump(mode="json", exclude_defaults=True),
        actor=principal.name if principal is not None else None,
    )
    return Response(
        BulkOut.of(bulk).model_dump_json(),
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
        headers={"Location": f"/api/v1/bulk/{bulk.id}"},
    )


@router.get(
    "/bulk/{bulk_id}",
    response_model=BulkOut,
    responses=problem_responses(404, 422, 503),
    summary="A bulk action's progress and outcome counts",
    dependencies=[require_scope(Scope.ADMIN)],
)
async def get_bulk(bulk_id: UUID, state: StateDep, request: Request) -> Response:
    try:
        bulk = await _service(state).get(bulk_id)
    except BulkNotFound as exc:
        return problem(404, "bulk-not-found", "Bulk action not found", str(exc), instance=request.url.path)
    return Response(BulkOut.of(bulk).model_dump_json(), media_type="application/json")
