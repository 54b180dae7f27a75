"""``POST /api/v1/tasks/batch``: up to 1,000 tasks in one request, one PostgreSQL transaction
and one pipelined enqueue; all of them are accepted or none is. The batch gets an id, counts
(``GET /api/v1/batches/{id}``) and an optional on_complete task (docs/batches.md)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from taskcore import batches
from taskcore.domain import TaskStatus
from taskcore.flow import QUEUE_PATTERN
from taskcore.store.batches import Batch, BatchRepository
from taskflow_api._strict_json import StrictJSONRoute
from taskflow_api.auth import Scope
from taskflow_api.deps import StateDep, charge_submits, require_scope
from taskflow_api.observability import origin_of
from taskflow_api.problems import problem_responses
from taskflow_api.schemas import MAX_PRIORITY, TaskCreate

MAX_BATCH = 1000
BATCH_PATH = "/api/v1/tasks/batch"


class BatchTaskCreate(TaskCreate):
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=batches.IDEMPOTENCY_KEY_MAX,
        description="As a single submit's Idempotency-Key: a task stored with this key already is returned "
        "(duplicate_of, idempotent_replay), nothing stored",
    )


class OnCompleteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_type: str = Field(min_length=1, max_length=200, description="A registered task type")
    payload: dict[str, Any] = Field(description="Must match the task type's JSON Schema")
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)
    max_retries: int | None = Field(default=None, ge=0)
    timeout_seconds: int | None = Field(default=None, ge=1)

    def to_on_complete(self) -> batches.OnComplete:
        return batches.OnComplete(
            task_type=self.task_type,
            payload=self.payload,
            queue=self.queue,
            priority=self.priority,
            max_retries=self.max_retries,
            timeout_seconds=self.timeout_seconds,
        )


class BatchCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tasks": [{"task_type": "test", "payload": {"message": "Hello"}}]}]},
    )

    tasks: list[BatchTaskCreate] = Field(min_length=1, max_length=MAX_BATCH, description="1 to 1,000 tasks")
    on_complete: OnCompleteCreate | None = Field(
        default=None,
        description="A task submitted once, when every task of the batch is terminal; its handler sees ctx.batch",
    )


class BatchItem(BaseModel):
    id: UUID
    status: TaskStatus
    run_at: datetime
    created_at: datetime
    location: str
    duplicate_of: UUID | None = Field(
        default=None,
        description="Present when the item's unique_key was held (the holding task) or its idempotency_key "
        "was used (that task): nothing stored",
    )
    duplicate: bool | None = Field(default=None, description="true with duplicate_of")
    idempotent_replay: bool | None = Field(default=None, description="true when duplicate_of is the idempotency_key's")


class BatchOut(BaseModel):
    batch_id: UUID
    count: int
    items: list[BatchItem] = Field(description="One per submitted task, in request order")


class OnCompleteOut(BaseModel):
    task_id: UUID
    status: TaskStatus | None = Field(description="null until the batch has finished and the task is stored")


class BatchStatusOut(BaseModel):
    id: UUID
    created_at: datetime
    total: int = Field(description="Tasks the batch stored (duplicates are not part of it)")
    counts: dict[TaskStatus, int] = Field(description="Its tasks by status (every status)")
    finished: bool = Field(description="Every task is terminal")
    finished_at: datetime | None = Field(description="When the last of them ended (null while one has not)")
    on_complete: OnCompleteOut | None


router = APIRouter(prefix="/api/v1", route_class=StrictJSONRoute)


@router.post(
    "/tasks/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchOut,
    responses=problem_responses(400, 413, 422, 429, 503),
    summary="Submit up to 1,000 tasks at once (all or nothing)",
    dependencies=[require_scope(Scope.TASKS_WRITE)],
)
async def submit_batch(
    body: BatchCreate,
    state: StateDep,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=batches.IDEMPOTENCY_KEY_MAX,
            description="A repeat with the same key returns the first answer (same batch_id and task ids) "
            "and stores nothing; a different body with the same key is 409",
        ),
    ] = None,
) -> Response:
    await charge_submits(request, len(body.tasks))  # a batch costs its size in the submit rate limit
    stored = await batches.submit_batch(
        state.service,
        [t.to_request() for t in body.tasks],
        origin=origin_of(request, state.tracing),
        keys=[t.idempotency_key for t in body.tasks],
        on_complete=None if body.on_complete is None else body.on_complete.to_on_complete(),
        idempotency_key=idempotency_key,
    )
    headers = {"TaskFlow-Batch-Id": str(stored.id), "Location": f"/api/v1/batches/{stored.id}"}
    if stored.replayed:
        headers["Idempotent-Replayed"] = "true"
    else:
        duplicates = {i for i, t in enumerate(stored.items) if t.duplicate_of is not None}
        counted = (t.task_type for i, t in enumerate(body.tasks) if i not in duplicates)
        for task_type, n in Counter(counted).items():
            state.metrics.submitted_of(task_type).inc(n)
    return Response(stored.answer, status_code=status.HTTP_202_ACCEPTED, media_type="application/json", headers=headers)


@router.get(
    "/batches/{batch_id}",
    response_model=BatchStatusOut,
    responses=problem_responses(404, 422, 503),
    summary="A batch: its tasks' counts by status, whether it finished, its on_complete task",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def get_batch(batch_id: UUID, state: StateDep) -> BatchStatusOut:
    return batch_out(await BatchRepository(state.repo.pool).get(batch_id))


def batch_out(batch: Batch) -> BatchStatusOut:
    return BatchStatusOut(
        id=batch.id,
        created_at=batch.created_at,
        total=batch.total,
        counts=batch.counts,
        finished=batch.finished,
        finished_at=batch.finished_at,
        on_complete=None
        if batch.on_complete_task_id is None
        else OnCompleteOut(task_id=batch.on_complete_task_id, status=batch.on_complete_status),
    )
