"""API v1 for workflows: submit a DAG of steps, read it with its steps' states, list, cancel."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from taskcore.callbacks import MAX_CALLBACK_URL_LENGTH, check_callback_url
from taskcore.store.repository import decode_cursor
from taskcore.store.workflows import Workflow
from taskcore.workflows import MAX_STEPS, REF_PATTERN, StepRequest, WorkflowService, step_request
from taskflow_api._strict_json import StrictJSONRoute
from taskflow_api.auth import Scope
from taskflow_api.deps import StateDep, charge_submits, require_scope
from taskflow_api.observability import actor_of, origin_of
from taskflow_api.problems import problem_responses
from taskflow_api.schemas import TaskCreate

PATH = "/api/v1/workflows"

router = APIRouter(prefix="/api/v1", route_class=StrictJSONRoute, tags=["workflows"])


class StepCreate(TaskCreate):
    """A task of the workflow, named by ``ref``, waiting for the steps named in ``depends_on``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"ref": "merge", "task_type": "test", "payload": {}, "depends_on": ["left", "right"]}]
        },
    )

    ref: str = Field(pattern=REF_PATTERN, description="The step's name, unique in the workflow")
    depends_on: list[str] = Field(  # type: ignore[assignment]  # refs of steps here, not task ids
        default_factory=list, max_length=MAX_STEPS, description="Refs of the steps that must succeed first"
    )

    def to_step(self, callback_url: str | None = None) -> StepRequest:
        """The step; ``callback_url`` (the workflow's) applies when the step names none."""
        task = self.to_request()
        if task.callback_url is None and callback_url is not None:
            task = replace(task, callback_url=callback_url)
        return step_request(self.ref, task, self.depends_on)


class WorkflowCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "fan-out",
                    "tasks": [
                        {"ref": "fetch", "task_type": "test", "payload": {}},
                        {"ref": "left", "task_type": "test", "payload": {}, "depends_on": ["fetch"]},
                        {"ref": "right", "task_type": "test", "payload": {}, "depends_on": ["fetch"]},
                        {"ref": "merge", "task_type": "test", "payload": {}, "depends_on": ["left", "right"]},
                    ],
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    tasks: list[StepCreate] = Field(min_length=1, max_length=MAX_STEPS, description="1 to 1,000 steps")
    callback_url: str | None = Field(
        default=None,
        max_length=MAX_CALLBACK_URL_LENGTH,
        description="The callback_url of every step that names none (see docs/callbacks.md)",
    )


class WorkflowCreated(BaseModel):
    id: UUID
    tasks: dict[str, UUID] = Field(description="Task id of each step, by ref")
    location: str


class StepOut(BaseModel):
    ref: str
    task_id: UUID
    task_type: str
    status: str
    depends_on: list[str] = Field(description="Refs of the steps it waits for")
    attempt: int
    started_at: datetime | None
    finished_at: datetime | None
    error: dict[str, Any] | None


class WorkflowOut(BaseModel):
    id: UUID
    name: str
    status: str = Field(description="running, succeeded, failed or cancelled")
    created_at: datetime
    counts: dict[str, int] = Field(description="Steps by task status")
    steps: list[StepOut] | None = Field(default=None, description="Every step (not in the list)")

    @classmethod
    def of(cls, workflow: Workflow, *, steps: bool = True) -> WorkflowOut:
        refs = {t.id: t.ref or str(t.id) for t in workflow.steps}
        return cls(
            id=workflow.id,
            name=workflow.name,
            status=workflow.status,
            created_at=workflow.created_at,
            counts={s.value: n for s, n in workflow.counts.items()},
            steps=[
                StepOut(
                    ref=t.ref or str(t.id),
                    task_id=t.id,
                    task_type=t.task_type,
                    status=t.status.value,
                    depends_on=[refs.get(p, str(p)) for p in t.depends_on],
                    attempt=t.attempt,
                    started_at=t.started_at,
                    finished_at=t.finished_at,
                    error=t.error,
                )
                for t in workflow.steps
            ]
            if steps
            else None,
        )


class WorkflowPage(BaseModel):
    items: list[WorkflowOut]
    next_cursor: str | None


def _service(state: Any) -> WorkflowService:
    return WorkflowService(state.service)


def _cursor(workflow: Workflow) -> str:
    raw = orjson.dumps([workflow.created_at.isoformat(), str(workflow.id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@router.post(
    "/workflows",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WorkflowCreated,
    responses=problem_responses(400, 413, 422, 429, 503),
    summary="Submit a workflow: steps that run once the steps they depend on succeeded",
    dependencies=[require_scope(Scope.TASKS_WRITE)],
)
async def submit_workflow(body: WorkflowCreate, state: StateDep, request: Request) -> Response:
    await charge_submits(request, len(body.tasks))
    callback_url = check_callback_url(body.callback_url, state.settings)
    submitted = await _service(state).submit(
        body.name, [t.to_step(callback_url) for t in body.tasks], origin=origin_of(request, state.tracing)
    )
    for step in body.tasks:
        state.metrics.submitted_of(step.task_type).inc()
    location = f"{PATH}/{submitted.id}"
    return Response(
        orjson.dumps(
            {"id": str(submitted.id), "tasks": {s.ref: str(s.id) for s in submitted.steps}, "location": location}
        ),
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
        headers={"Location": location},
    )


@router.get(
    "/workflows/{workflow_id}",
    response_model=WorkflowOut,
    responses=problem_responses(404, 422, 503),
    summary="A workflow: its status, counts and every step",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def get_workflow(workflow_id: UUID, state: StateDep) -> WorkflowOut:
    return WorkflowOut.of(await _service(state).get(workflow_id))


@router.get(
    "/workflows",
    response_model=WorkflowPage,
    responses=problem_responses(422, 503),
    summary="Workflows, newest first (without their steps)",
    dependencies=[require_scope(Scope.TASKS_READ)],
)
async def list_workflows(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> WorkflowPage:
    before = None if cursor is None else decode_cursor(cursor)
    found = await _service(state).page(limit=limit + 1, before=before)
    items = found[:limit]
    return WorkflowPage(
        items=[WorkflowOut.of(w, steps=False) for w in items],
        next_cursor=_cursor(items[-1]) if len(found) > limit else None,
    )


@router.post(
    "/workflows/{workflow_id}/cancel",
    response_model=WorkflowOut,
    responses=problem_responses(404, 422, 503),
    summary="Cancel every step that has not finished (running ones are stopped by their workers)",
    dependencies=[require_scope(Scope.TASKS_WRITE)],
)
async def cancel_workflow(workflow_id: UUID, state: StateDep, request: Request) -> WorkflowOut:
    return WorkflowOut.of(await _service(state).cancel(workflow_id, actor=actor_of(request)))
