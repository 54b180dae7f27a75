"""The dashboard's workflow pages: the list, and one workflow drawn as a graph with live step states.

The graph's layout is computed here (a layered layout: a step's column is one more than its
deepest parent's, its row its place in that column) and drawn as inline SVG, so the page needs
no graph library; app.js re-fetches the fragment while the workflow runs."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from taskcore.domain import Task
from taskcore.errors import WorkflowNotFound
from taskcore.store.workflows import Workflow
from taskcore.workflows import WorkflowService
from taskflow_api.deps import ServiceDep
from taskflow_api.ui._session import Viewer
from taskflow_api.ui.routes import _DashboardRoute, _remember, render

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=_DashboardRoute)

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 150, 44, 60, 18, 10


@dataclass(frozen=True, slots=True)
class Node:
    task: Task
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def layout(steps: list[Task]) -> Graph:
    """Columns by depth (parents to the left), rows in submit order within a column."""
    by_id = {t.id: t for t in steps}
    depth: dict[object, int] = {}
    for task in steps:  # stored in submit order; a parent may come later, so settle iteratively
        depth[task.id] = 0
    for _ in range(len(steps)):
        changed = False
        for task in steps:
            deepest = max((depth[p] + 1 for p in task.depends_on if p in by_id), default=0)
            if deepest != depth[task.id]:
                depth[task.id], changed = deepest, True
        if not changed:
            break
    rows: dict[int, int] = {}
    place: dict[object, tuple[int, int]] = {}
    for task in steps:
        column = depth[task.id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        place[task.id] = (PAD + column * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    nodes = [Node(t, *place[t.id]) for t in steps]
    edges = [
        Edge(place[p][0] + NODE_W, place[p][1] + NODE_H // 2, place[t.id][0], place[t.id][1] + NODE_H // 2)
        for t in steps
        for p in t.depends_on
        if p in place
    ]
    columns = max(depth.values(), default=0) + 1
    height_rows = max(rows.values(), default=1)
    return Graph(
        nodes, edges, 2 * PAD + columns * NODE_W + (columns - 1) * GAP_X, 2 * PAD + height_rows * (NODE_H + GAP_Y)
    )


@router.get("/workflows", response_class=HTMLResponse)
async def workflows_page(request: Request, principal: Viewer, service: ServiceDep) -> Response:
    _remember(request, principal)
    found = await WorkflowService(service).page(limit=50)
    return render(request, "workflows.html", {"workflows": found, "page": "workflows"})


@router.get("/workflows/{workflow_id}", response_class=HTMLResponse)
async def workflow_page(
    request: Request, workflow_id: UUID, principal: Viewer, service: ServiceDep, fragment: bool = False
) -> Response:
    _remember(request, principal)
    try:
        workflow: Workflow = await WorkflowService(service).get(workflow_id)
    except WorkflowNotFound:
        detail = f"No workflow {workflow_id}."
        return render(request, "error.html", {"title": "Workflow not found", "detail": detail}, status_code=404)
    context = {
        "workflow": workflow,
        "graph": layout(workflow.steps),
        "node_w": NODE_W,
        "node_h": NODE_H,
        "refs": {t.id: t.ref for t in workflow.steps},
        "page": "workflows",
        "finished": workflow.status != "running",
    }
    return render(request, "_workflow.html" if fragment else "workflow.html", context)
