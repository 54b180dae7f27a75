"""Workflow commands: ``taskflow workflow submit FILE.json`` and ``taskflow workflows get|list|cancel``.

Registered on the app by ``taskflow_cli.main``; they share its client, output and exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from taskflow_cli._render import age, status_text
from taskflow_cli.main import _state, _task_id, call, emit, out
from taskflow_client import Workflow

workflow_app = typer.Typer(help="Submit a workflow from a JSON file.", no_args_is_help=True)
workflows_app = typer.Typer(
    help="Without a command: the newest workflows. `workflows get|cancel ID` for one.",
    invoke_without_command=True,
    no_args_is_help=False,
)
IdArg = Annotated[str, typer.Argument(metavar="ID", help="A workflow id")]


def _read(path: Path) -> dict[str, Any]:
    """The file holds ``{"name": ..., "tasks": [...], "callback_url": ...}`` as POST /api/v1/workflows takes it
    (callback_url optional); ``-`` reads stdin."""
    try:
        raw = typer.get_binary_stream("stdin").read() if str(path) == "-" else path.read_bytes()
        body = orjson.loads(raw)
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="FILE") from exc
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="FILE") from exc
    if not isinstance(body, dict) or not isinstance(body.get("tasks"), list) or not isinstance(body.get("name"), str):
        raise typer.BadParameter('must be a JSON object {"name": ..., "tasks": [...]}', param_hint="FILE")
    return body


@workflow_app.command("submit")
def submit(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(metavar="FILE", help="A workflow as JSON (docs/workflows.md); - for stdin")],
) -> None:
    """Submit a workflow; prints its id and each step's task id."""
    state = _state(ctx)
    body = _read(path)
    callback_url = body.get("callback_url")  # the workflow's: that of every step naming none
    created = call(state, lambda c: c.submit_workflow(body["name"], body["tasks"], callback_url=callback_url))

    def human() -> None:
        out.print(f"workflow {created.id} submitted", markup=False, highlight=False)
        for ref, task_id in created.tasks.items():
            out.print(f"  {ref}: {task_id}", markup=False, highlight=False)

    emit(state, created, human)


def steps_table(workflow: Workflow) -> Table:
    table = Table(title=f"{workflow.name} — {workflow.status}", title_justify="left")
    for column in ("STEP", "STATUS", "DEPENDS ON", "TASK", "FINISHED"):
        table.add_column(column)
    for step in workflow.steps or []:
        table.add_row(
            step.ref,
            status_text(step.status.value),
            ", ".join(step.depends_on),
            str(step.task_id),
            age(step.finished_at),
        )
    return table


def workflows_table(workflows: list[Workflow]) -> Table:
    table = Table(title="Workflows", title_justify="left")
    for column in ("ID", "NAME", "STATUS", "STEPS", "CREATED"):
        table.add_column(column)
    for w in workflows:
        counts = ", ".join(f"{n} {s}" for s, n in w.counts.items() if n)
        table.add_row(str(w.id), w.name, status_text(w.status), counts, age(w.created_at))
    return table


@workflows_app.callback()
def workflows(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Rows")] = 20,
) -> None:
    """The newest workflows, or one workflow's commands."""
    if ctx.invoked_subcommand is not None:
        return
    show_list(ctx, limit)


@workflows_app.command("list")
def show_list(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=100, help="Rows")] = 20) -> None:
    """The newest workflows with their status and step counts."""
    state = _state(ctx)
    page = call(state, lambda c: c.workflows(limit=limit))
    emit(state, list(page.items), lambda: out.print(workflows_table(list(page.items))))


@workflows_app.command("get")
def get(ctx: typer.Context, workflow_id: IdArg) -> None:
    """One workflow: its status and every step."""
    state = _state(ctx)
    parsed = _task_id(workflow_id)
    found = call(state, lambda c: c.workflow(parsed))
    emit(state, found, lambda: out.print(steps_table(found)))


@workflows_app.command("cancel")
def cancel(ctx: typer.Context, workflow_id: IdArg) -> None:
    """Cancel every step that has not finished."""
    state = _state(ctx)
    parsed = _task_id(workflow_id)
    found = call(state, lambda c: c.cancel_workflow(parsed))
    emit(state, found, lambda: out.print(steps_table(found)))


def register(app: typer.Typer) -> None:
    app.add_typer(workflow_app, name="workflow")
    app.add_typer(workflows_app, name="workflows")
