"""``GET /api/v1/tasks/{id}/deliveries``: a task's callback deliveries and their attempts (docs/callbacks.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from taskcore.store.callbacks import Delivery, DeliveryRepository
from taskflow_api._strict_json import StrictJSONRoute
from taskflow_api.auth import Scope
from taskflow_api.deps import RepoDep, require_scope
from taskflow_api.problems import problem_responses

router = APIRouter(prefix="/api/v1", route_class=StrictJSONRoute, tags=["callbacks"])


class AttemptOut(BaseModel):
    attempt: int = Field(description="1 for the first POST")
    at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status; null when none came back")
    error: str | None = Field(description="Why it did not count as delivered; null on a 2xx")
    duration_ms: float


class DeliveryOut(BaseModel):
    id: UUID = Field(description="Sent as TaskFlow-Delivery: the same on every attempt (dedupe on it)")
    task_id: UUID
    event: str = Field(description="task.succeeded, task.failed or task.cancelled (TaskFlow-Event)")
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int = Field(description="POSTs started so far")
    next_attempt_at: datetime | None = Field(description="While pending: when the next attempt is due")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime = Field(description="When the task reached the state (the outbox row was written)")
    delivered_at: datetime | None
    finished_at: datetime | None = Field(description="When it was delivered or given up")
    history: list[AttemptOut] = Field(description="Every attempt recorded, oldest first")

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            task_id=d.task_id,
            event=d.event,
            url=d.url,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            finished_at=d.finished_at,
            history=[
                AttemptOut(
                    attempt=a.attempt, at=a.at, status_code=a.status_code, error=a.error, duration_ms=a.duration_ms
                )
                for a in d.history
            ],
        )


class DeliveryList(BaseModel):
    items: list[DeliveryOut] = Field(description="Oldest first: one per terminal state the task reached")


@router.get(
    "/tasks/{task_id}/deliveries",
    response_model=DeliveryList,
    responses=problem_responses(404, 422, 503),
    summary="A task's callback deliveries and their attempts",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def task_deliveries(task_id: UUID, repo: RepoDep) -> DeliveryList:
    deliveries = await DeliveryRepository(repo.pool).for_task(task_id)
    return DeliveryList(items=[DeliveryOut.of(d) for d in deliveries])
