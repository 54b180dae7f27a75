"""Batch commands: ``taskflow batch FILE.jsonl`` and ``taskflow batches get ID``.

Registered on the app by ``taskflow_cli.main``; they share its client, output and exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from taskflow_cli._render import age, status_text
from taskflow_cli.main import _state, _uuid, call, emit, out, read_payload
from taskflow_client import Batch

batches_app = typer.Typer(help="`batches get ID`: one batch's counts and its on_complete task.", no_args_is_help=True)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """One task per line (``{"task_type", "payload", ...options, "idempotency_key"}``); ``-`` reads stdin."""
    try:
        raw = typer.get_binary_stream("stdin").read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="FILE") from exc
    tasks: list[dict[str, Any]] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            task = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise typer.BadParameter(f"line {number} is not valid JSON: {exc}", param_hint="FILE") from exc
        if not isinstance(task, dict):
            raise typer.BadParameter(f"line {number} must be a JSON object (one task)", param_hint="FILE")
        tasks.append(task)
    if not tasks:
        raise typer.BadParameter("holds no task", param_hint="FILE")
    return tasks


def batch(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(metavar="FILE", help="JSON Lines, one task per line; - for stdin")],
    on_complete_type: Annotated[
        str | None, typer.Option(help="A task type to run once every task of the batch has finished")
    ] = None,
    on_complete_payload: Annotated[str, typer.Option(help="Its payload: JSON object, @file or @- for stdin")] = "{}",
    idempotency_key: Annotated[
        str | None, typer.Option(help="Sending the same batch again with this key stores nothing new")
    ] = None,
) -> None:
    """Submit up to 1,000 tasks at once (all or nothing); prints the batch id and each task id."""
    state = _state(ctx)
    tasks = _read_lines(path)
    on_complete = None
    if on_complete_type is not None:
        on_complete = {"task_type": on_complete_type, "payload": read_payload(on_complete_payload)}
    submitted = call(state, lambda c: c.submit_batch(tasks, on_complete=on_complete, idempotency_key=idempotency_key))

    def human() -> None:
        duplicates = sum(1 for i in submitted.items if i.duplicate_of is not None)
        note = f" ({duplicates} already stored)" if duplicates else ""
        out.print(f"batch {submitted.batch_id}: {submitted.count} tasks{note}", markup=False, highlight=False)
        for item in submitted.items:
            out.print(f"  {item.id}", markup=False, highlight=False)

    emit(state, submitted, human)


def batch_table(found: Batch) -> Table:
    state = "finished" if found.finished else "running"
    table = Table(title=f"batch {found.id} — {state}", title_justify="left")
    for column in ("STATUS", "TASKS"):
        table.add_column(column)
    for status, n in found.counts.items():
        if n:
            table.add_row(status_text(status), str(n))
    table.add_row("total", str(found.total))
    if found.on_complete is not None:
        callback = found.on_complete
        table.caption = f"on_complete {callback.task_id}: {callback.status or 'waits for the batch'}"
    if found.finished_at is not None:
        table.caption = (table.caption or "") + f"  finished {age(found.finished_at)}"
    return table


@batches_app.command("get")
def get(ctx: typer.Context, batch_id: Annotated[str, typer.Argument(metavar="ID", help="A batch id")]) -> None:
    """One batch: its tasks by status, whether it finished, its on_complete task."""
    state = _state(ctx)
    parsed = _uuid(batch_id, "a batch id")
    found = call(state, lambda c: c.batch(parsed))
    emit(state, found, lambda: out.print(batch_table(found)))


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)
    app.add_typer(batches_app, name="batches")
