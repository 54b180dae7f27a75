"""``taskflow``: submit, inspect and drive TaskFlow tasks from a shell (Typer + Rich)."""

from __future__ import annotations

import copy
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.live import Live
from typer.core import TyperGroup, TyperOption

from taskflow_cli._exit import Exit, exit_code_for
from taskflow_cli._render import dumps, task_detail, tasks_table, types_table
from taskflow_client import Client, Task, TaskflowError, TaskStatus

if TYPE_CHECKING:  # the click Typer bundles: its callbacks take these
    from typer._click.core import Context as ClickContext
    from typer._click.core import Parameter as ClickParameter

T = TypeVar("T")
GLOBAL_PANEL = "Global options (before or after the command)"


def _given_after_the_command(ctx: ClickContext, param: ClickParameter, value: Any) -> None:
    """A global option typed after the command overrides the one before it (or its default)."""
    source = ctx.get_parameter_source(param.name) if param.name else None
    if source is not None and source.name == "COMMANDLINE":
        setattr(ctx.obj, param.name, value)


class GlobalOptionsGroup(TyperGroup):
    """Lets the group's options (--json, --url, ...) also follow the command, as people type them:
    each command gets a copy of each, which writes into the group's Context when given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shared = [p for p in self.params if isinstance(p, TyperOption) and p.name]
        for option in shared:
            option.rich_help_panel = GLOBAL_PANEL
        _share(self.commands.values(), shared)


def _share(commands: Any, shared: list[TyperOption]) -> None:
    """Each command, and each command of a sub-group (`queue pause`, `limits set`), gets the copies."""
    for command in commands:
        taken = {opt for p in command.params for opt in p.opts}
        command.params.extend(_after_command(p) for p in shared if not taken & set(p.opts))
        _share(getattr(command, "commands", {}).values(), shared)


def _after_command(option: TyperOption) -> TyperOption:
    after = copy.copy(option)
    after.expose_value = False  # the command's function does not take it: it reads the Context
    after.callback = _given_after_the_command
    after.envvar = None  # the environment was read once, by the group's option
    after.show_envvar = False
    after.show_default = False  # unless given here, the value is the group's, not this declaration's default
    return after


app = typer.Typer(
    name="taskflow",
    cls=GlobalOptionsGroup,
    help="Submit, inspect and drive TaskFlow tasks (docs/cli.md). Global options go before or after the command.",
    epilog=(
        "Exit codes: 0 ok · 1 task failed or cancelled (--wait) · 2 usage or input refused · 3 not found · "
        "4 auth · 5 unavailable · 6 conflict · 7 wait timed out · 8 other error"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@dataclass
class Context:
    url: str | None
    api_key: str | None
    json: bool
    timeout: float
    retries: int

    def client(self) -> Client:
        return Client(self.url, api_key=self.api_key, timeout=self.timeout, retries=self.retries)


def _state(ctx: typer.Context) -> Context:
    state: Context = ctx.obj
    return state


@app.callback()
def main_options(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(envvar="TASKFLOW_URL", help="API base URL [default: local]")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="TASKFLOW_API_KEY", help="API key (sent as a Bearer token)", show_default=False)
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per HTTP request")] = 10.0,
    retries: Annotated[int, typer.Option(min=0, help="Retries on 503/429/refused connection")] = 2,
) -> None:
    ctx.obj = Context(url=url, api_key=api_key, json=json, timeout=timeout, retries=retries)


def fail(code: Exit, message: str, problem: dict[str, Any] | None = None, *, as_json: bool = False) -> NoReturn:
    if as_json:
        err.print(dumps(problem or {"detail": message}), markup=False, highlight=False)
    else:
        err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(int(code))


def call(ctx: Context, action: Callable[[Client], T]) -> T:
    """Run ``action`` with a client; a typed API error becomes its documented exit code."""
    try:
        with ctx.client() as client:
            return action(client)
    except TaskflowError as exc:
        problem = getattr(exc, "problem", None)
        message = str(exc)
        errors = getattr(exc, "errors", None)
        if errors:
            message += "; " + "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
        fail(exit_code_for(exc), message, problem, as_json=ctx.json)


def emit(ctx: Context, value: BaseModel | list[BaseModel], human: Callable[[], None]) -> None:
    if ctx.json:
        data = [v.model_dump(mode="json") for v in value] if isinstance(value, list) else value.model_dump(mode="json")
        out.print(dumps(data), markup=False, highlight=False)
    else:
        human()


def read_payload(text: str) -> dict[str, Any]:
    """``--payload``: inline JSON, ``@file`` (a JSON file) or ``@-`` (standard input)."""
    try:
        if text.startswith("@"):
            source = text[1:]
            raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        else:
            raw = text.encode()
        value = orjson.loads(raw)
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {text[1:]}: {exc.strerror}", param_hint="--payload") from exc
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--payload") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--payload")
    return value


def finish(ctx: Context, task: Task, *, waited: bool) -> None:
    """Print the task; after a wait, the exit code says how it ended."""
    emit(ctx, task, lambda: task_detail(out, task))
    if not waited:
        return
    if not task.terminal:
        fail(Exit.WAIT_TIMEOUT, f"task {task.id} is still {task.status.value}", as_json=False)
    if task.status is not TaskStatus.SUCCEEDED:
        raise typer.Exit(int(Exit.TASK_UNSUCCESSFUL))


@app.command()
def submit(
    ctx: typer.Context,
    task_type: Annotated[str, typer.Argument(metavar="TYPE", help="A registered task type (see `taskflow types`)")],
    payload: Annotated[str, typer.Option("--payload", "-p", help="JSON object, @file or @- for stdin")] = "{}",
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait until it finishes; exit 1 if it fails")] = False,
    wait_timeout: Annotated[
        float | None, typer.Option(min=0.1, help="With --wait: give up after this many seconds (exit 7)")
    ] = None,
    priority: Annotated[int | None, typer.Option(min=0, max=9, help="0-9, higher runs first")] = None,
    delay: Annotated[float | None, typer.Option(min=0, help="Run after this many seconds")] = None,
    max_retries: Annotated[int | None, typer.Option(min=0, help="Retries after the first attempt")] = None,
    timeout_seconds: Annotated[int | None, typer.Option(min=1, help="Per-attempt time limit")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="A repeat with the same key returns the original")] = None,
    unique_key: Annotated[
        str | None, typer.Option(help="While a task with this key waits or runs, return it instead")
    ] = None,
    unique_for: Annotated[int | None, typer.Option(min=0, help="...and this many seconds after it was created")] = None,
    queue: Annotated[str | None, typer.Option(help="The queue [default: the task type's, else default]")] = None,
    limit_key: Annotated[
        list[str] | None,
        typer.Option("--limit-key", "-k", help="Repeatable (up to 4); the first is the fair-share key"),
    ] = None,
) -> None:
    """Submit a task (and with --wait, wait for its result)."""
    state = _state(ctx)
    body = read_payload(payload)
    task = call(
        state,
        lambda c: c.submit(
            task_type,
            body,
            priority=priority,
            delay_seconds=delay,
            max_retries=max_retries,
            timeout_seconds=timeout_seconds,
            idempotency_key=idempotency_key,
            unique_key=unique_key,
            unique_for_seconds=unique_for,
            queue=queue,
            limit_keys=limit_key,
            wait=wait,
            wait_timeout=wait_timeout,
        ),
    )
    finish(state, task, waited=wait)


@app.command()
def get(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    wait: Annotated[
        float | None, typer.Option(min=0.1, help="Wait up to this many seconds for it to finish (exit 1/7)")
    ] = None,
) -> None:
    """Show one task."""
    state = _state(ctx)
    parsed = _task_id(task_id)
    task = call(state, lambda c: c.wait(parsed, timeout=wait) if wait else c.get(parsed))
    finish(state, task, waited=wait is not None)


@app.command("list")
def list_tasks(
    ctx: typer.Context,
    status: Annotated[list[TaskStatus] | None, typer.Option("--status", "-s", help="Repeatable")] = None,
    task_type: Annotated[str | None, typer.Option("--type", "-t", help="Only this task type")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Page size")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
) -> None:
    """List tasks, newest first (one page; --json includes next_cursor)."""
    state = _state(ctx)
    page = call(state, lambda c: c.list(status=status, task_type=task_type, queue=queue, limit=limit, cursor=cursor))

    def human() -> None:
        out.print(tasks_table(page.items))
        if page.next_cursor:
            out.print(f"next page: --cursor {page.next_cursor}", markup=False, highlight=False)

    emit(state, page, human)


@app.command()
def cancel(ctx: typer.Context, task_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel a task (a running one stops shortly after)."""
    state = _state(ctx)
    parsed = _task_id(task_id)
    task = call(state, lambda c: c.cancel(parsed))
    emit(state, task, lambda: task_detail(out, task))


@app.command()
def retry(ctx: typer.Context, task_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Run a failed or cancelled task again."""
    state = _state(ctx)
    parsed = _task_id(task_id)
    task = call(state, lambda c: c.retry(parsed))
    emit(state, task, lambda: task_detail(out, task))


@app.command()
def types(ctx: typer.Context) -> None:
    """The registered task types and their payload fields."""
    state = _state(ctx)
    found = call(state, lambda c: c.task_types())
    emit(state, list(found), lambda: out.print(types_table(found)))


@app.command()
def watch(
    ctx: typer.Context,
    status: Annotated[list[TaskStatus] | None, typer.Option("--status", "-s", help="Repeatable")] = None,
    task_type: Annotated[str | None, typer.Option("--type", "-t")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Rows shown")] = 20,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes")] = 1.0,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many refreshes")] = None,
    until_terminal: Annotated[bool, typer.Option(help="Stop once every task shown has finished")] = False,
) -> None:
    """A live table of the newest tasks (Ctrl-C to stop)."""
    state = _state(ctx)
    refreshes = 0
    with _live(state) as show:
        while True:
            page = call(state, lambda c: c.list(status=status, task_type=task_type, limit=limit))
            refreshes += 1
            show(page.items)
            done = until_terminal and all(t.terminal for t in page.items)
            if done or (count is not None and refreshes >= count):
                return
            time.sleep(interval)


@contextmanager
def _live(state: Context) -> Iterator[Callable[[list[Task]], None]]:
    if state.json:  # one JSON document per refresh, one per line
        yield lambda tasks: out.print(
            orjson.dumps([t.model_dump(mode="json") for t in tasks]).decode(), markup=False, highlight=False
        )
        return
    with Live(tasks_table([]), console=out, auto_refresh=False) as live:
        yield lambda tasks: live.update(tasks_table(tasks, title="TaskFlow — newest tasks"), refresh=True)


def _task_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a task id (UUID)", param_hint="ID") from None


def _subcommands() -> None:
    from taskflow_cli.schedules import schedules_app  # it uses this module's helpers

    app.add_typer(schedules_app, name="schedules")


_subcommands()
from taskflow_cli import flow as _flow  # noqa: E402 - its commands use the helpers above

_flow.register(app)

from taskflow_cli import workflows as _workflows  # noqa: E402 - likewise

_workflows.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
