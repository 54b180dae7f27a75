"""Task types: a handler registered under a name with a pydantic payload model.

Handlers are ``async def handler(payload: Model) -> JSON`` or take a second
``ctx: TaskContext`` argument. A plain ``def`` handler is treated as blocking or
CPU-bound and runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints
from uuid import UUID

from pydantic import BaseModel, ValidationError

from taskcore.errors import HandlerExit, TaskValidationError
from taskcore.flow import QUEUE_PATTERN
from taskcore.progress import REPORTED, ProgressHub, Reported, encode_progress

Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a handler may know about the run it is part of."""

    task_id: UUID
    task_type: str
    attempt: int
    max_retries: int
    # The results of the tasks it depends on: by ref for a workflow step's parents, by task id
    # (as a string) for a plain submit's depends_on. Empty for a task without parents.
    parents: Mapping[str, Any] = field(default_factory=dict)
    # For a batch's on_complete task: {"id", "counts" (by status), "total"}; None for any other task.
    batch: Mapping[str, Any] | None = None
    # Where progress goes (the worker's hub); None outside a worker: progress() only validates.
    progress_hub: ProgressHub | None = field(default=None, repr=False, compare=False)

    def progress(self, fraction: float, message: str | None = None, *, data: Any = None) -> Reported:
        """Report how far the task has got: ``fraction`` 0..1, a short ``message`` (<= 1000
        characters) and optional JSON ``data`` (<= 8 KiB). Stored on the task (``progress``) at most
        about once a second; the last value is always kept. Raises InvalidProgress on a bad value.

        One callable for both kinds of handler: ``await ctx.progress(...)`` in an async handler,
        ``ctx.progress(...)`` (or ``ctx.progress_sync``) in a plain ``def`` one running in its thread.
        It never waits for PostgreSQL."""
        if self.progress_hub is None:
            encode_progress(fraction, message, data, self.attempt)
            return REPORTED
        return self.progress_hub.report(self.task_id, self.attempt, fraction, message, data)

    def progress_sync(self, fraction: float, message: str | None = None, *, data: Any = None) -> None:
        """``progress`` for a plain ``def`` handler (the same call; named for readability)."""
        self.progress(fraction, message, data=data)


@dataclass(frozen=True, slots=True)
class TaskType:
    name: str
    handler: Handler
    payload_model: type[BaseModel]
    description: str = ""
    queue: str | None = None  # the queue its tasks go to unless a submit names one
    _wants_ctx: bool = field(default=False, repr=False)
    _is_async: bool = field(default=True, repr=False)

    def json_schema(self) -> dict[str, Any]:
        return self.payload_model.model_json_schema()

    def parse(self, payload: dict[str, Any]) -> BaseModel:
        """Validate a payload; errors name each bad field under ``payload``."""
        try:
            return self.payload_model.model_validate(payload)
        except ValidationError as exc:
            raise TaskValidationError(
                f"payload does not match the schema of task type {self.name!r}",
                [
                    {
                        "field": ".".join(["payload", *(str(p) for p in err["loc"])]),
                        "message": err["msg"],
                        "type": err["type"],
                    }
                    for err in exc.errors(include_url=False)
                ],
            ) from exc

    async def run(self, payload: BaseModel, ctx: TaskContext) -> Any:
        args: tuple[Any, ...] = (payload, ctx) if self._wants_ctx else (payload,)
        try:
            if self._is_async:
                return await self.handler(*args)
            return await asyncio.to_thread(self.handler, *args)
        except (SystemExit, KeyboardInterrupt) as exc:
            # asyncio re-raises these out of the event loop, which would end the whole worker
            # process (and every other task it runs) over one task's sys.exit().
            raise HandlerExit(f"the handler raised {type(exc).__name__}({exc}); a task cannot stop the worker") from exc


class TaskRegistry:
    """Name → TaskType. The API and the worker load the same modules into one."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}

    def task(
        self, name: str, *, description: str | None = None, queue: str | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator registering ``handler`` as task type ``name`` (its tasks go to ``queue`` by default)."""

        def decorator(handler: Handler) -> Handler:
            self.add(name, handler, description=description, queue=queue)
            return handler

        return decorator

    def add(self, name: str, handler: Handler, *, description: str | None = None, queue: str | None = None) -> TaskType:
        if not name or len(name) > 200:
            raise ValueError("task type names are 1 to 200 characters")
        if queue is not None and not re.fullmatch(QUEUE_PATTERN, queue):
            raise ValueError(f"queue {queue!r} of task type {name!r} must match {QUEUE_PATTERN}")
        existing = self._types.get(name)
        if existing is not None and existing.handler is not handler:
            raise ValueError(f"task type {name!r} is already registered to {existing.handler!r}")
        params = list(inspect.signature(handler).parameters.values())
        if not 1 <= len(params) <= 2:
            raise TypeError(f"handler for {name!r} must take (payload) or (payload, ctx)")
        hints = get_type_hints(handler)
        model = hints.get(params[0].name)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"first parameter of the {name!r} handler must be annotated with a pydantic model")
        doc = description if description is not None else inspect.getdoc(handler) or ""
        task_type = TaskType(
            name=name,
            handler=handler,
            payload_model=model,
            description=doc.split("\n\n")[0],
            queue=queue,
            _wants_ctx=len(params) == 2,
            _is_async=inspect.iscoroutinefunction(handler),
        )
        self._types[name] = task_type
        return task_type

    def get(self, name: str) -> TaskType:
        try:
            return self._types[name]
        except KeyError:
            raise TaskValidationError(
                f"unknown task type {name!r}",
                [
                    {
                        "field": "task_type",
                        "message": f"unknown task type; known: {', '.join(sorted(self._types)) or 'none'}",
                        "type": "unknown_task_type",
                    }
                ],
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[TaskType]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._types)


# The registry user modules register into with ``@taskcore.task(...)``.
default_registry = TaskRegistry()
task = default_registry.task


def load_registry(modules: list[str], *, builtin: bool = True) -> TaskRegistry:
    """Import the task modules (which register into ``default_registry``) and return it."""
    names = (["taskcore.builtin_tasks"] if builtin else []) + modules
    for module in names:
        importlib.import_module(module)
    return default_registry
