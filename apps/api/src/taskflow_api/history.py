"""API v1: a task's history, ``GET /api/v1/tasks/{id}/history`` (scope tasks:read).

Every transition of the task, in order, with who made it (docs/api.md, "History")."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from taskcore.domain import TaskStatus
from taskcore.store.history import Transition, task_history
from taskflow_api._strict_json import StrictJSONRoute
from taskflow_api.auth import Scope
from taskflow_api.deps import RepoDep, require_scope
from taskflow_api.problems import problem_responses

router = APIRouter(prefix="/api/v1", route_class=StrictJSONRoute)


class TransitionOut(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "at": "2026-12-04T19:30:00.123456Z",
                    "from": "running",
                    "to": "scheduled",
                    "attempt": 1,
                    "actor": "worker:host-1234-ab12",
                    "detail": {"error_type": "TimeoutError", "message": "...", "retry_at": "2026-12-04T19:30:02Z"},
                }
            ]
        },
    )

    at: datetime
    from_: TaskStatus | None = Field(alias="from", description="null: the task was created")
    to: TaskStatus
    attempt: int = Field(description="The task's attempt number after the transition")
    actor: str | None = Field(
        description="Who made it: api:<key name> (api with auth off), dashboard:<key name>, worker:<id>, "
        "reconciler, admitter, schedule:<name>, bulk:<bulk action id>, workflow"
    )
    detail: dict[str, Any] | None = Field(
        description="Details: error_type and message of a failed attempt, retry_at, the parent of a workflow "
        "release (parent) or of an UpstreamFailed cancel (upstream_task_id), a reason"
    )

    @classmethod
    def of(cls, t: Transition) -> TransitionOut:
        return cls.model_construct(
            at=t.at, from_=t.from_status, to=t.to_status, attempt=t.attempt, actor=t.actor, detail=t.detail
        )


@router.get(
    "/tasks/{task_id}/history",
    response_model=list[TransitionOut],
    responses=problem_responses(404, 422, 503),
    summary="A task's history: every transition, oldest first",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def get_history(task_id: UUID, repo: RepoDep) -> Response:
    items = [TransitionOut.of(t).model_dump(mode="json", by_alias=True) for t in await task_history(repo.pool, task_id)]
    return Response(orjson.dumps(items), media_type="application/json")
