"""``taskflow schedules ...``: list, create, get, pause, resume, trigger and delete schedules."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from taskflow_cli._render import status_text
from taskflow_cli.main import _state, call, emit, finish, out, read_payload
from taskflow_client import Schedule, task_body

schedules_app = typer.Typer(help="Periodic tasks (docs/schedules.md)", no_args_is_help=True)

ScheduleArg = Annotated[str, typer.Argument(metavar="ID", help="A schedule id (see `taskflow schedules list`)")]


def _timing(s: Schedule) -> str:
    return f"{s.cron} ({s.timezone})" if s.cron else f"every {s.every_seconds}s"


def schedules_table(items: list[Schedule]) -> Table:
    table = Table(header_style="bold")
    for column in ("name", "id", "when", "task", "paused", "next run", "last run"):
        table.add_column(column, no_wrap=column in {"id", "next run"})
    for s in items:
        last = s.last_runs[0] if s.last_runs else None
        table.add_row(
            s.name,
            str(s.id),
            _timing(s),
            str(s.task.get("task_type")),
            "yes" if s.paused else "no",
            s.next_runs[0].strftime("%Y-%m-%d %H:%M:%SZ") if s.next_runs else "-",
            status_text(last.status) if last else "-",
        )
    return table


def schedule_detail(s: Schedule) -> None:
    out.print(schedules_table([s]))
    for when in s.next_runs:
        out.print(f"next: {when.isoformat()}", markup=False, highlight=False)
    for run in s.last_runs:
        out.print(f"run {run.scheduled_for.isoformat()} {run.task_id} ", status_text(run.status), highlight=False)


@schedules_app.command("list")
def list_schedules(ctx: typer.Context) -> None:
    """Every schedule with its next run and its latest run's status."""
    state = _state(ctx)
    items = call(state, lambda c: c.list_schedules())
    emit(state, list(items), lambda: out.print(schedules_table(items)))


@schedules_app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Unique name")],
    task_type: Annotated[str, typer.Argument(metavar="TYPE", help="The task type each run is")],
    payload: Annotated[str, typer.Option("--payload", "-p", help="JSON object, @file or @- for stdin")] = "{}",
    cron: Annotated[str | None, typer.Option(help='Five-field cron, e.g. "*/5 * * * *"')] = None,
    every: Annotated[int | None, typer.Option("--every", min=1, help="Or: every this many seconds")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of --cron [default: UTC]")] = None,
    overlap: Annotated[str | None, typer.Option(help="skip (default) or allow")] = None,
    catch_up: Annotated[str | None, typer.Option(help="none, latest (default) or all")] = None,
    queue: Annotated[str | None, typer.Option(help="The runs' queue")] = None,
    priority: Annotated[int | None, typer.Option(min=0, max=9)] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused")] = False,
) -> None:
    """Create a schedule (give --cron or --every)."""
    state = _state(ctx)
    task = task_body(task_type, read_payload(payload), queue=queue, priority=priority)
    schedule = call(
        state,
        lambda c: c.create_schedule(
            name,
            task,
            cron=cron,
            every_seconds=every,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
            paused=paused or None,
        ),
    )
    emit(state, schedule, lambda: schedule_detail(schedule))


@schedules_app.command()
def get(ctx: typer.Context, schedule_id: ScheduleArg) -> None:
    """Show one schedule: next runs and latest runs."""
    state = _state(ctx)
    schedule = call(state, lambda c: c.get_schedule(schedule_id))
    emit(state, schedule, lambda: schedule_detail(schedule))


@schedules_app.command()
def pause(ctx: typer.Context, schedule_id: ScheduleArg) -> None:
    """Pause: no slot fires until resumed."""
    state = _state(ctx)
    schedule = call(state, lambda c: c.pause_schedule(schedule_id))
    emit(state, schedule, lambda: schedule_detail(schedule))


@schedules_app.command()
def resume(ctx: typer.Context, schedule_id: ScheduleArg) -> None:
    """Resume from now (slots missed while paused do not run)."""
    state = _state(ctx)
    schedule = call(state, lambda c: c.resume_schedule(schedule_id))
    emit(state, schedule, lambda: schedule_detail(schedule))


@schedules_app.command()
def trigger(ctx: typer.Context, schedule_id: ScheduleArg) -> None:
    """Run the schedule's task now (outside its slots); prints the task."""
    state = _state(ctx)
    task = call(state, lambda c: c.trigger_schedule(schedule_id))
    finish(state, task, waited=False)


@schedules_app.command()
def delete(ctx: typer.Context, schedule_id: ScheduleArg) -> None:
    """Delete a schedule (its past runs keep their schedule_id)."""
    state = _state(ctx)
    call(state, lambda c: c.delete_schedule(schedule_id))
    if not state.json:
        out.print(f"deleted schedule {schedule_id}", markup=False, highlight=False)
