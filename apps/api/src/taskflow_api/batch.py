"""``POST /api/v1/tasks/batch``: up to 1,000 tasks in one request, one PostgreSQL statement
and one pipelined enqueue; all of them are accepted or none is."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from taskcore.domain import TaskStatus
from taskflow_api._strict_json import StrictJSONRoute
from taskflow_api.auth import Scope
from taskflow_api.deps import StateDep, charge_submits, require_scope
from taskflow_api.observability import origin_of
from taskflow_api.problems import problem_responses
from taskflow_api.schemas import TaskCreate

MAX_BATCH = 1000
BATCH_PATH = "/api/v1/tasks/batch"


class BatchCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tasks": [{"task_type": "test", "payload": {"message": "Hello"}}]}]},
    )

    tasks: list[TaskCreate] = Field(min_length=1, max_length=MAX_BATCH, description="1 to 1,000 tasks")


class BatchItem(BaseModel):
    id: UUID
    status: TaskStatus
    run_at: datetime
    created_at: datetime
    location: str
    duplicate_of: UUID | None = Field(
        default=None, description="Present when the item's unique_key was held: the holding task, nothing stored"
    )


class BatchOut(BaseModel):
    count: int
    items: list[BatchItem] = Field(description="One per submitted task, in request order")


router = APIRouter(prefix="/api/v1", route_class=StrictJSONRoute)


@router.post(
    "/tasks/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchOut,
    responses=problem_responses(400, 413, 422, 429, 503),
    summary="Submit up to 1,000 tasks at once (all or nothing)",
    dependencies=[require_scope(Scope.TASKS_WRITE)],
)
async def submit_batch(body: BatchCreate, state: StateDep, request: Request) -> Response:
    await charge_submits(request, len(body.tasks))  # a batch costs its size in the submit rate limit
    stored = await state.service.submit_many(
        [t.to_request() for t in body.tasks], origin=origin_of(request, state.tracing)
    )
    duplicates = {i for i, t in enumerate(stored) if t.duplicate_of is not None}
    counted = (t.task_type for i, t in enumerate(body.tasks) if i not in duplicates)
    for task_type, n in Counter(counted).items():
        state.metrics.submitted_of(task_type).inc(n)
    items: list[dict[str, Any]] = [
        {
            "id": t.id,
            "status": t.status,
            "run_at": t.run_at,
            "created_at": t.created_at,
            "location": f"/api/v1/tasks/{t.id}",
            **({"duplicate_of": t.duplicate_of} if t.duplicate_of is not None else {}),
        }
        for t in stored
    ]
    # Built with orjson directly: at 1,000 items, FastAPI's generic encoder would cost more than the insert.
    return Response(
        orjson.dumps({"count": len(items), "items": items}, option=orjson.OPT_UTC_Z),
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
    )
