"""Progress reported by running handlers: validated, throttled, written to the task's ``progress``.

A handler calls ``ctx.progress(0.4, "resized 40 of 100", data={...})``. The worker's one
``ProgressHub`` keeps the latest value of each task that reported and writes it at most once per
``interval`` (1 s) per task: the first report is written at once, later ones within the window
replace each other and the last is written when the window ends, and whatever is still pending
is written before the task's outcome is recorded (``settle``). So a chatty handler costs about one
small UPDATE a second, and the last value is never lost.

A task that never reports costs nothing: the hub holds no state for it and ``settle`` is one
dict lookup. A write is guarded by the task running the same attempt, so a late one changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import structlog

from taskcore.jsonvalue import NotStorableJSON, dumps_storable

log = structlog.get_logger("taskflow.progress")

MAX_MESSAGE_CHARS = 1000
MAX_DATA_BYTES = 8192
THROTTLE_SECONDS = 1.0

# (task_id, attempt, progress as JSON text) -> whether it was stored (the task still runs that attempt)
Writer = Callable[[UUID, int, str], Awaitable[bool]]


class InvalidProgress(ValueError):
    """A handler reported a progress value TaskFlow cannot store (a bug in the handler)."""


def encode_progress(fraction: float, message: str | None, data: Any, attempt: int) -> str:
    """The stored value as JSON text: ``{fraction, message, data, at, attempt}``; InvalidProgress if bad."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise InvalidProgress(f"progress fraction must be a number from 0 to 1, not {type(fraction).__name__}")
    if math.isnan(fraction) or not 0 <= fraction <= 1:
        raise InvalidProgress(f"progress fraction must be from 0 to 1, not {fraction!r}")
    if message is not None:
        if not isinstance(message, str):
            raise InvalidProgress(f"progress message must be a string, not {type(message).__name__}")
        if len(message) > MAX_MESSAGE_CHARS:
            raise InvalidProgress(f"progress message is {len(message)} characters; the limit is {MAX_MESSAGE_CHARS}")
    try:
        encoded_data = dumps_storable(data)
    except NotStorableJSON as exc:
        raise InvalidProgress(f"progress data is not JSON-serialisable: {exc}") from exc
    if len(encoded_data) > MAX_DATA_BYTES:
        raise InvalidProgress(f"progress data is {len(encoded_data)} bytes as JSON; the limit is {MAX_DATA_BYTES}")
    value = {
        "fraction": float(fraction),
        "message": message,
        "at": datetime.now(UTC).isoformat(),
        "attempt": attempt,
    }
    try:
        head = dumps_storable(value).decode()
    except NotStorableJSON as exc:
        raise InvalidProgress(f"progress message cannot be stored: {exc}") from exc
    # data is spliced in already encoded: it was serialised once, to check it
    return head[:-1] + ',"data":' + encoded_data.decode() + "}"


class Reported:
    """What ``ctx.progress`` returns: already done, so ``await`` on it is optional (see TaskContext.progress)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


REPORTED = Reported()


@dataclass(slots=True)
class _Tracker:
    attempt: int
    last_write: float = -math.inf  # monotonic time the last write started
    pending: str | None = None
    timer: asyncio.TimerHandle | None = None
    writing: asyncio.Task[None] | None = None


class ProgressHub:
    """One per worker: the progress of its running tasks, throttled per task."""

    def __init__(self, writer: Writer, *, interval: float = THROTTLE_SECONDS) -> None:
        self._write = writer
        self._interval = interval
        self._tasks: dict[UUID, _Tracker] = {}
        # The worker's loop, which handler threads hand their reports to (built inside it).
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self.writes = 0  # values written (for tests and metrics)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def report(self, task_id: UUID, attempt: int, fraction: float, message: str | None, data: Any) -> Reported:
        """Validate and record a value; callable from the event loop or from a handler's thread."""
        value = encode_progress(fraction, message, data, attempt)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a plain-def handler, in its thread: hand the value to the loop
            if self._loop is None:
                raise RuntimeError("this ProgressHub was built outside an event loop") from None
            self._loop.call_soon_threadsafe(self._record, task_id, attempt, value)
        else:
            self._record(task_id, attempt, value)
        return REPORTED

    def _record(self, task_id: UUID, attempt: int, value: str) -> None:
        tracker = self._tasks.get(task_id)
        if tracker is None or tracker.attempt != attempt:
            tracker = self._tasks[task_id] = _Tracker(attempt)
        tracker.pending = value
        if tracker.timer is None and tracker.writing is None:
            self._schedule(task_id, tracker)

    def _schedule(self, task_id: UUID, tracker: _Tracker) -> None:
        wait = tracker.last_write + self._interval - time.monotonic()
        if wait <= 0:
            self._start_write(task_id, tracker)
        else:
            tracker.timer = asyncio.get_running_loop().call_later(wait, self._window_ended, task_id, tracker)

    def _window_ended(self, task_id: UUID, tracker: _Tracker) -> None:
        tracker.timer = None
        if tracker.pending is not None and tracker.writing is None and self._tasks.get(task_id) is tracker:
            self._start_write(task_id, tracker)

    def _start_write(self, task_id: UUID, tracker: _Tracker) -> None:
        value, tracker.pending = tracker.pending, None
        assert value is not None
        tracker.last_write = time.monotonic()
        tracker.writing = asyncio.get_running_loop().create_task(self._store(task_id, tracker, value))

    async def _store(self, task_id: UUID, tracker: _Tracker, value: str) -> None:
        try:
            await self._write_quietly(task_id, tracker.attempt, value)
        finally:
            tracker.writing = None
            if tracker.pending is not None and self._tasks.get(task_id) is tracker:
                self._schedule(task_id, tracker)

    async def _write_quietly(self, task_id: UUID, attempt: int, value: str) -> None:
        try:
            await self._write(task_id, attempt, value)
            self.writes += 1
        except Exception as exc:  # noqa: BLE001 - progress is advisory: it must never fail the task
            log.warning("progress not stored", task_id=str(task_id), error=f"{type(exc).__name__}: {exc}")

    async def settle(self, task_id: UUID) -> None:
        """Before the task's outcome is recorded: finish the write in flight and write what is pending."""
        tracker = self._tasks.pop(task_id, None)
        if tracker is None:
            return
        if tracker.timer is not None:
            tracker.timer.cancel()
        if tracker.writing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(tracker.writing)
        if tracker.pending is not None:
            await self._write_quietly(task_id, tracker.attempt, tracker.pending)
