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
from taskflow_cli._render import (
    bulk_detail,
    deliveries_table,
    dumps,
    progress_line,
    task_detail,
    tasks_table,
    types_table,
)
from taskflow_client import BulkAction, Client, Task, TaskflowError, TaskStatus

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
    """Each command, and each command of a sub-group (`queue pause`, `limits set`, `bulk retry`), gets the copies."""
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


def finish(ctx: Context, task: Task, *, waited: bool, show: bool = True) -> None:
    """Print the task; after a wait, the exit code says how it ended."""
    if show:
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
    depends_on: Annotated[
        list[str] | None,
        typer.Option("--depends-on", help="Repeatable: a task id that must succeed first (it waits blocked)"),
    ] = None,
    callback_url: Annotated[
        str | None, typer.Option(help="POST the task JSON, signed, to this http(s) URL when it ends")
    ] = None,
) -> None:
    """Submit a task (and with --wait, wait for its result)."""
    state = _state(ctx)
    body = read_payload(payload)
    parents = [_task_id(p) for p in depends_on or []]
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
            depends_on=parents or None,
            callback_url=callback_url,
            wait=wait,
            wait_timeout=wait_timeout,
        ),
    )
    finish(state, task, waited=wait)


@app.command()
def deliveries(ctx: typer.Context, task_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Show a task's callback deliveries (status, attempts, last answer)."""
    state = _state(ctx)
    parsed = _task_id(task_id)
    found = call(state, lambda c: c.deliveries(parsed))
    emit(state, list(found), lambda: out.print(deliveries_table(found)))


@app.command()
def get(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    wait: Annotated[
        float | None, typer.Option(min=0.1, help="Wait up to this many seconds for it to finish (exit 1/7)")
    ] = None,
    watch_: Annotated[
        bool,
        typer.Option("--watch", help="Follow it until it finishes, printing each status and progress change (exit 1)"),
    ] = False,
) -> None:
    """Show one task (--watch: follow it live)."""
    state = _state(ctx)
    parsed = _task_id(task_id)
    if watch_:
        task = call(state, lambda c: _follow(state, c, parsed))
        finish(state, task, waited=True, show=False)
        return
    task = call(state, lambda c: c.wait(parsed, timeout=wait) if wait else c.get(parsed))
    finish(state, task, waited=wait is not None)


def _follow(state: Context, client: Client, task_id: str) -> Task:
    """Print one line (one JSON document with --json) per state or progress change; the last state."""
    last: Task | None = None
    for task in client.events(task_id):
        last = task
        if state.json:
            out.print(orjson.dumps(task.model_dump(mode="json")).decode(), markup=False, highlight=False)
        else:
            out.print(progress_line(task), highlight=False)
    assert last is not None  # the stream always starts with the current state
    return last


@app.command("list")
def list_tasks(
    ctx: typer.Context,
    status: Annotated[list[TaskStatus] | None, typer.Option("--status", "-s", help="Repeatable")] = None,
    task_type: Annotated[str | None, typer.Option("--type", "-t", help="Only this task type")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Page size")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Only the tasks of this batch")] = None,
) -> None:
    """List tasks, newest first (one page; --json includes next_cursor)."""
    state = _state(ctx)
    batch_id = None if batch is None else _uuid(batch, "a batch id")
    page = call(
        state,
        lambda c: c.list(
            status=status, task_type=task_type, queue=queue, limit=limit, cursor=cursor, batch_id=batch_id
        ),
    )

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


bulk_app = typer.Typer(
    help="Retry or cancel every task a filter matches (scope admin); --dry-run only counts them.",
    no_args_is_help=True,
)
app.add_typer(bulk_app, name="bulk")

Statuses = Annotated[list[TaskStatus] | None, typer.Option("--status", "-s", help="Repeatable")]
TypeOption = Annotated[str | None, typer.Option("--type", "-t", help="Only this task type")]
QueueOption = Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue")]
LimitKeyOption = Annotated[str | None, typer.Option("--limit-key", help="Only tasks naming this limit key")]
ErrorTypeOption = Annotated[str | None, typer.Option("--error-type", help="Only tasks whose error.type is this")]
PayloadOption = Annotated[
    str | None,
    typer.Option(
        "--payload", "-p", help='Only tasks whose payload contains this JSON object, e.g. {"customer_id": 42}'
    ),
]
TimeOption = Annotated[str | None, typer.Option(help="RFC 3339, e.g. 2026-12-01T00:00:00Z")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Only count the tasks it would act on")]
WaitBulk = Annotated[bool, typer.Option("--wait", "-w", help="Follow it until it has finished")]


@dataclass(frozen=True)
class BulkArgs:
    status: list[TaskStatus] | None
    task_type: str | None
    queue: str | None
    limit_key: str | None
    error_type: str | None
    payload: str | None
    created_after: str | None
    created_before: str | None

    def filter(self) -> dict[str, Any]:
        given: dict[str, Any] = {
            "status": [s.value for s in self.status or []] or None,
            "task_type": self.task_type,
            "queue": self.queue,
            "limit_key": self.limit_key,
            "error_type": self.error_type,
            "payload": read_payload(self.payload) if self.payload is not None else None,
            "created_after": self.created_after,
            "created_before": self.created_before,
        }
        return {k: v for k, v in given.items() if v is not None}


def _bulk(ctx: typer.Context, action: str, args: BulkArgs, *, dry_run: bool, wait: bool) -> None:
    state = _state(ctx)
    started = call(state, lambda c: c.bulk(action, args.filter(), dry_run=dry_run))
    if dry_run or not wait or started.id is None:
        _show_bulk(state, started, action)
        return
    bulk_id = started.id
    while not started.finished:
        time.sleep(0.5)
        started = call(state, lambda c: c.bulk_status(bulk_id))
    _show_bulk(state, started, action)


def _show_bulk(state: Context, bulk: BulkAction, action: str) -> None:
    if state.json:
        out.print(dumps(bulk.model_dump(mode="json", exclude_none=True)), markup=False, highlight=False)
    elif bulk.dry_run:
        out.print(f"{action} would act on {bulk.matched} tasks (dry run: nothing was changed)", highlight=False)
    else:
        bulk_detail(out, bulk)


@bulk_app.command("retry")
def bulk_retry(
    ctx: typer.Context,
    status: Statuses = None,
    task_type: TypeOption = None,
    queue: QueueOption = None,
    limit_key: LimitKeyOption = None,
    error_type: ErrorTypeOption = None,
    payload: PayloadOption = None,
    created_after: TimeOption = None,
    created_before: TimeOption = None,
    dry_run: DryRun = False,
    wait: WaitBulk = False,
) -> None:
    """Retry every failed or cancelled task the filter matches."""
    args = BulkArgs(status, task_type, queue, limit_key, error_type, payload, created_after, created_before)
    _bulk(ctx, "retry", args, dry_run=dry_run, wait=wait)


@bulk_app.command("cancel")
def bulk_cancel(
    ctx: typer.Context,
    status: Statuses = None,
    task_type: TypeOption = None,
    queue: QueueOption = None,
    limit_key: LimitKeyOption = None,
    error_type: ErrorTypeOption = None,
    payload: PayloadOption = None,
    created_after: TimeOption = None,
    created_before: TimeOption = None,
    dry_run: DryRun = False,
    wait: WaitBulk = False,
) -> None:
    """Cancel every waiting or running task the filter matches."""
    args = BulkArgs(status, task_type, queue, limit_key, error_type, payload, created_after, created_before)
    _bulk(ctx, "cancel", args, dry_run=dry_run, wait=wait)


@bulk_app.command("get")
def bulk_get(ctx: typer.Context, bulk_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """A bulk action's progress and outcome counts."""
    state = _state(ctx)
    parsed = _uuid(bulk_id, "a bulk action id")
    bulk = call(state, lambda c: c.bulk_status(parsed))
    _show_bulk(state, bulk, bulk.action or "")


def _uuid(text: str, what: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not {what} (UUID)", param_hint="ID") from None


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

from taskflow_cli import batches as _batches  # noqa: E402 - likewise

_batches.register(app)
from taskflow_cli import history as _history  # noqa: E402 - likewise

_history.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
