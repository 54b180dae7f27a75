"""How results look: Rich tables for people, JSON for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from taskflow_client import BulkAction, Delivery, Limit, Queue, QueueStats, Task, TaskType

STATUS_STYLE = {
    "blocked": "dim",
    "scheduled": "cyan",
    "queued": "blue",
    "running": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "magenta",
    "pending": "yellow",  # a callback delivery's states
    "delivered": "green",
}


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def age(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def tasks_table(tasks: Sequence[Task], *, title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold")
    for column in ("id", "type", "status", "attempt", "created", "finished"):
        table.add_column(column, no_wrap=column == "id")
    for task in tasks:
        table.add_row(
            str(task.id),
            task.task_type,
            status_text(task.status.value),
            f"{task.attempt}/{task.max_retries + 1}",
            age(task.created_at),
            age(task.finished_at),
        )
    return table


def deliveries_table(deliveries: Sequence[Delivery]) -> Table:
    table = Table(header_style="bold")
    for column in ("delivery", "event", "status", "attempts", "last code", "last error", "created"):
        table.add_column(column, no_wrap=column == "delivery")
    for d in deliveries:
        table.add_row(
            str(d.id),
            d.event,
            status_text(d.status),
            str(d.attempts),
            "-" if d.last_status_code is None else str(d.last_status_code),
            d.last_error or "-",
            age(d.created_at),
        )
    return table


def task_detail(console: Console, task: Task) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("id", str(task.id)),
        ("type", task.task_type),
        ("status", status_text(task.status.value)),
        ("attempt", f"{task.attempt} of {task.max_retries + 1}"),
        ("priority", str(task.priority)),
        ("queue", task.queue),
        ("limit keys", ", ".join(task.limit_keys) or "-"),
        ("created", task.created_at.isoformat()),
        ("run at", task.run_at.isoformat()),
        ("started", task.started_at.isoformat() if task.started_at else "-"),
        ("finished", task.finished_at.isoformat() if task.finished_at else "-"),
        ("payload", orjson.dumps(task.payload).decode()),
    ]
    if task.callback_url:
        rows.append(("callback", task.callback_url))
    if task.cancel_requested:
        rows.append(("cancel", "requested"))
    if task.result is not None:
        rows.append(("result", orjson.dumps(task.result).decode()))
    if task.error:
        rows.append(("error", f"{task.error.get('type', '')}: {task.error.get('message', '')}"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def types_table(types: Sequence[TaskType]) -> Table:
    table = Table(header_style="bold")
    table.add_column("type")
    table.add_column("description")
    table.add_column("payload fields")
    for item in types:
        fields = ", ".join(item.payload_schema.get("properties", {}))
        table.add_row(item.name, item.description, fields or "-")
    return table


def queue_table(stats: QueueStats) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, count in stats.depth.items():
        table.add_row(name, str(count))
    table.add_row("due", str(stats.due))
    oldest = stats.oldest_due_age_seconds
    table.add_row("oldest due", "-" if oldest is None else f"{oldest:.1f}s")
    table.add_row("workers", str(stats.workers))
    return table


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def queues_table(queues: Sequence[Queue]) -> Table:
    table = Table(header_style="bold")
    for column in ("queue", "due", "running", "scheduled", "oldest due", "workers", "paused"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for item in queues:
        workers = Text(f"{item.workers} !", style="bold red") if item.stranded else Text(str(item.workers))
        table.add_row(
            item.name,
            str(item.due),
            str(item.running),
            str(item.depth.get("scheduled", 0)),
            _seconds(item.oldest_due_age_seconds),
            workers,
            Text("paused", style="bold yellow") if item.paused else Text("-"),
        )
    if any(q.stranded for q in queues):
        table.caption = "! due tasks and no live worker consumes the queue (TASKFLOW_WORKER_QUEUES)"
    return table


def _usage(limit: Limit) -> str:
    return f"{limit.in_use}/{limit.max_running}" if limit.max_running is not None else str(limit.in_use)


def _rate(limit: Limit) -> str:
    if limit.per_second is None:
        return "-"
    return f"{limit.per_second:g}/s burst {limit.burst or 1}"


def limits_table(limits: Sequence[Limit]) -> Table:
    table = Table(header_style="bold")
    for column in ("key", "in use/max", "running", "rate", "busiest"):
        table.add_column(column)
    for limit in limits:
        busiest = ", ".join(f"{k.key}={k.in_use}" for k in limit.busiest) or "-"
        table.add_row(limit.key, _usage(limit), str(limit.running), _rate(limit), busiest)
    return table


def limit_detail(console: Console, limit: Limit) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("key", limit.key + ("  (template: each key counted on its own)" if limit.template else "")),
        ("max running", "-" if limit.max_running is None else str(limit.max_running)),
        ("rate", _rate(limit)),
        ("in use", _usage(limit)),
        ("running", str(limit.running)),
    ]
    if limit.template:
        rows.append(("busiest", ", ".join(f"{k.key}={k.in_use}" for k in limit.busiest) or "-"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def progress_line(task: Task) -> Text:
    """One line of ``get --watch``: the status, and the progress when the handler reported any."""
    line = Text.assemble(status_text(task.status.value), f" attempt {task.attempt}")
    progress = task.progress
    if progress:
        line.append(f"  {progress.get('fraction', 0) * 100:5.1f} %")
        if progress.get("message"):
            line.append(f"  {progress['message']}")
    return line


def bulk_detail(console: Console, bulk: BulkAction) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("id", str(bulk.id)),
        ("action", bulk.action or ""),
        ("status", bulk.status or ""),
        ("matched", str(bulk.matched)),
        ("done", str(bulk.done)),
        ("succeeded", str(bulk.succeeded)),
        ("skipped", f"{bulk.skipped} (changed since the match)"),
        ("failed", str(bulk.failed)),
        ("filter", orjson.dumps(bulk.filter).decode()),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
