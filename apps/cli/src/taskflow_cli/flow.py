"""Flow-control commands: ``taskflow queues``, ``queue pause|resume``, ``task-type pause|resume``, ``limits``.

Registered on the app by ``taskflow_cli.main``; they share its client, output and exit codes."""

from __future__ import annotations

from typing import Annotated

import typer

from taskflow_cli._render import dumps, limit_detail, limits_table, queue_table, queues_table
from taskflow_cli.main import _state, call, emit, out

queue_app = typer.Typer(
    help="Without a command: the aggregate over every queue. `queue show|pause|resume NAME` for one.",
    invoke_without_command=True,
    no_args_is_help=False,
)
task_type_app = typer.Typer(help="Pause or resume a task type (scope admin).", no_args_is_help=True)
limits_app = typer.Typer(
    help="Without a command: every limit and its usage. `limits show|set|delete KEY` for one.",
    invoke_without_command=True,
    no_args_is_help=False,
)

QueueArg = Annotated[str, typer.Argument(metavar="NAME", help="A queue name")]
TypeArg = Annotated[str, typer.Argument(metavar="NAME", help="A registered task type")]
KeyArg = Annotated[str, typer.Argument(metavar="KEY", help="A limit key, or a template ending in * (tenant:*)")]


def queues(ctx: typer.Context) -> None:
    """Every queue: due, running, oldest due, live workers, paused (! marks due work no worker consumes)."""
    state = _state(ctx)
    found = call(state, lambda c: c.queues())
    emit(state, list(found), lambda: out.print(queues_table(found)))


@queue_app.callback()
def queue(ctx: typer.Context) -> None:
    """Queue depth, oldest due task and workers (over every queue); or one queue's commands."""
    if ctx.invoked_subcommand is not None:
        return
    state = _state(ctx)
    stats = call(state, lambda c: c.queue())
    emit(state, stats, lambda: out.print(queue_table(stats)))


@queue_app.command("show")
def queue_show(ctx: typer.Context, name: QueueArg) -> None:
    """One queue."""
    state = _state(ctx)
    found = call(state, lambda c: c.queue(name))
    emit(state, found, lambda: out.print(queues_table([found])))


@queue_app.command("pause")
def queue_pause(ctx: typer.Context, name: QueueArg) -> None:
    """Pause a queue (scope admin): submits are accepted, no worker starts its tasks until resumed."""
    state = _state(ctx)
    found = call(state, lambda c: c.pause_queue(name))
    emit(state, found, lambda: out.print(queues_table([found])))


@queue_app.command("resume")
def queue_resume(ctx: typer.Context, name: QueueArg) -> None:
    """Resume a paused queue (scope admin)."""
    state = _state(ctx)
    found = call(state, lambda c: c.resume_queue(name))
    emit(state, found, lambda: out.print(queues_table([found])))


@task_type_app.command("pause")
def task_type_pause(ctx: typer.Context, name: TypeArg) -> None:
    """Pause a task type (scope admin): its tasks are accepted and wait until resumed."""
    state = _state(ctx)
    found = call(state, lambda c: c.pause_task_type(name))
    emit(state, found, lambda: out.print(f"{found.name}: paused", markup=False, highlight=False))


@task_type_app.command("resume")
def task_type_resume(ctx: typer.Context, name: TypeArg) -> None:
    """Resume a paused task type (scope admin)."""
    state = _state(ctx)
    found = call(state, lambda c: c.resume_task_type(name))
    emit(state, found, lambda: out.print(f"{found.name}: resumed", markup=False, highlight=False))


@limits_app.callback()
def limits(ctx: typer.Context) -> None:
    """Every limit: slots in use against max_running, rate, burst, busiest keys of a template."""
    if ctx.invoked_subcommand is not None:
        return
    state = _state(ctx)
    found = call(state, lambda c: c.limits())
    emit(state, list(found), lambda: out.print(limits_table(found)))


@limits_app.command("show")
def limits_show(ctx: typer.Context, key: KeyArg) -> None:
    """One limit and its usage."""
    state = _state(ctx)
    found = call(state, lambda c: c.limit(key))
    emit(state, found, lambda: limit_detail(out, found))


@limits_app.command("set")
def limits_set(
    ctx: typer.Context,
    key: KeyArg,
    max_running: Annotated[int | None, typer.Option(help="Tasks under the key running at once")] = None,
    per_second: Annotated[float | None, typer.Option(help="Tasks under the key started per second")] = None,
    burst: Annotated[
        int | None, typer.Option(help="Starts allowed at once above the rate (needs --per-second)")
    ] = None,
) -> None:
    """Create or replace the limit on KEY (scope admin); the API checks the values (exit 2 naming the field)."""
    state = _state(ctx)
    found = call(state, lambda c: c.set_limit(key, max_running=max_running, per_second=per_second, burst=burst))
    emit(state, found, lambda: limit_detail(out, found))


@limits_app.command("delete")
def limits_delete(ctx: typer.Context, key: KeyArg) -> None:
    """Remove the limit on KEY (scope admin); its tasks are no longer held by it."""
    state = _state(ctx)
    call(state, lambda c: c.delete_limit(key))
    if state.json:
        out.print(dumps({"deleted": key}), markup=False, highlight=False)
    else:
        out.print(f"deleted limit {key}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("queues")(queues)
    app.add_typer(queue_app, name="queue")
    app.add_typer(task_type_app, name="task-type")
    app.add_typer(limits_app, name="limits")
