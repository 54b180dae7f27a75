"""``taskflow history ID``: every transition of a task, oldest first (a table, or --json).

Registered on the app by ``taskflow_cli.main``; it shares its client, output and exit codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import orjson
import typer
from rich.table import Table
from rich.text import Text

from taskflow_cli._render import dumps, status_text
from taskflow_cli.main import _state, _task_id, call, out
from taskflow_client import Transition


def history_table(history: Sequence[Transition], *, title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold")
    for column in ("at", "from", "to", "attempt", "actor", "detail"):
        table.add_column(column, no_wrap=column in ("at", "actor"))
    for t in history:
        table.add_row(
            t.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z",
            Text("created", style="dim") if t.from_ is None else status_text(t.from_.value),
            status_text(t.to.value),
            str(t.attempt),
            Text(t.actor or "-"),
            Text(orjson.dumps(t.detail).decode() if t.detail else ""),
        )
    return table


def history(ctx: typer.Context, task_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """A task's history: each transition (when, from → to, attempt, who, details), oldest first."""
    state = _state(ctx)
    parsed = _task_id(task_id)
    items = call(state, lambda c: c.history(parsed))
    if state.json:
        out.print(dumps([t.model_dump(mode="json", by_alias=True) for t in items]), markup=False, highlight=False)
    else:
        out.print(history_table(items, title=f"task {parsed}"))


def register(app: typer.Typer) -> None:
    app.command("history")(history)
