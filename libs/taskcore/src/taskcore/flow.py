"""Flow control in the domain: queue names, limit keys, limits, and the admission plan.

A task names a queue and up to four limit keys. A limit applies to one key, or, when its key
ends in ``*``, to every key with that prefix, each key counted on its own. ``plan_admission``
decides which waiting tasks may start now; it is pure so that the rules are tested alone, and
the store (``taskcore.store.flow``) runs it under the admission lock with the counts it read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from taskcore.errors import TaskValidationError

DEFAULT_QUEUE = "default"
QUEUE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
LIMIT_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
# A limit's own key may end in '*' (a template for every key with that prefix).
LIMIT_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}\*?$"
MAX_LIMIT_KEYS = 4
_QUEUE_RE = re.compile(QUEUE_PATTERN)
_KEY_RE = re.compile(LIMIT_KEY_PATTERN)
_LIMIT_NAME_RE = re.compile(LIMIT_NAME_PATTERN)


def _invalid(field: str, message: str) -> TaskValidationError:
    return TaskValidationError(f"{field} {message}", [{"field": field, "message": message, "type": "value_error"}])


def check_queue_name(name: str, *, field: str = "queue") -> str:
    if not _QUEUE_RE.fullmatch(name):
        raise _invalid(field, f"must match {QUEUE_PATTERN}")
    return name


def check_limit_keys(keys: Sequence[str], *, field: str = "limit_keys") -> tuple[str, ...]:
    if len(keys) > MAX_LIMIT_KEYS:
        raise _invalid(field, f"at most {MAX_LIMIT_KEYS} keys")
    for index, key in enumerate(keys):
        if not _KEY_RE.fullmatch(key):
            raise _invalid(f"{field}.{index}", f"must match {LIMIT_KEY_PATTERN}")
    if len(set(keys)) != len(keys):
        raise _invalid(field, "must not repeat a key")
    return tuple(keys)


def check_limit_name(key: str) -> str:
    if not _LIMIT_NAME_RE.fullmatch(key):
        raise _invalid("key", f"must match {LIMIT_NAME_PATTERN}")
    return key


@dataclass(frozen=True, slots=True)
class Limit:
    """``max_running`` slots and/or a token bucket of ``per_second`` with ``burst`` tokens."""

    key: str
    max_running: int | None = None
    per_second: float | None = None
    burst: int | None = None
    updated_at: datetime | None = None

    @property
    def template(self) -> bool:
        return self.key.endswith("*")

    @property
    def effective_burst(self) -> int:
        return self.burst or 1

    def covers(self, key: str) -> bool:
        return key.startswith(self.key[:-1]) if self.template else key == self.key

    @classmethod
    def checked(cls, key: str, *, max_running: int | None, per_second: float | None, burst: int | None) -> Limit:
        """A limit as a user asks for it; TaskValidationError naming each bad field."""
        errors: list[dict[str, Any]] = []

        def bad(field: str, message: str) -> None:
            errors.append({"field": field, "message": message, "type": "value_error"})

        if not _LIMIT_NAME_RE.fullmatch(key):
            bad("key", f"must match {LIMIT_NAME_PATTERN}")
        if max_running is not None and max_running <= 0:
            bad("max_running", "must be greater than 0")
        if per_second is not None and not per_second > 0:
            bad("per_second", "must be greater than 0")
        if burst is not None and burst <= 0:
            bad("burst", "must be greater than 0")
        if burst is not None and per_second is None:
            bad("burst", "needs per_second: a burst is the size of a rate's bucket")
        if max_running is None and per_second is None and burst is None:
            bad("max_running", "set max_running and/or per_second")
        if errors:
            raise TaskValidationError(
                "invalid limit: " + "; ".join(f"{e['field']} {e['message']}" for e in errors), errors
            )
        return cls(key, max_running, per_second, burst)


class LimitBook:
    """The limits in force, and which one governs a concrete key: its own, else the longest template."""

    def __init__(self, limits: Iterable[Limit]) -> None:
        self.exact: dict[str, Limit] = {}
        self.templates: list[Limit] = []
        for limit in limits:
            if limit.template:
                self.templates.append(limit)
            else:
                self.exact[limit.key] = limit
        self.templates.sort(key=lambda t: len(t.key), reverse=True)
        self._cache: dict[str, Limit | None] = {}

    def for_key(self, key: str) -> Limit | None:
        if key in self._cache:
            return self._cache[key]
        found = self.exact.get(key) or next((t for t in self.templates if t.covers(key)), None)
        self._cache[key] = found
        return found


@dataclass(frozen=True, slots=True)
class Candidate:
    """A waiting task the admitter may let start; ``rank`` is its place among its fair-share key's tasks."""

    id: UUID
    queue: str
    limit_keys: tuple[str, ...]
    priority: int
    run_at: datetime
    rank: int
    group: tuple[str, str] = ("", "")  # (queue, first limit key): the fair-share group


@dataclass(slots=True)
class AdmissionState:
    """What the admitter read under its lock; ``plan_admission`` updates it as it admits."""

    now: datetime
    room: dict[str, int]  # per queue: how many more admitted-but-unstarted tasks it may hold
    in_use: dict[str, int]  # per concrete key: slots held (admitted tasks queued or running)
    tat: dict[str, datetime]  # per rate-limited key: GCRA theoretical arrival time
    in_flight: dict[tuple[str, str], int] = field(default_factory=dict)  # per group: admitted, not ended
    horizon: timedelta = timedelta(seconds=1)


def plan_admission(
    candidates: Sequence[Candidate], book: LimitBook, state: AdmissionState
) -> list[tuple[UUID, datetime]]:
    """Which candidates start, and when (a rate may give a start up to ``horizon`` ahead).

    Fewest in flight first across fair-share keys (within equal priority), each task checked
    against every key it names; a task whose key is full is skipped, never in the way of others."""
    admitted: list[tuple[UUID, datetime]] = []
    # A group's place: what it already has in flight plus its place in this round, so a flood that
    # holds many slots yields to a key with none even when a round admits one task at a time.
    order = sorted(candidates, key=lambda c: (-c.priority, state.in_flight.get(c.group, 0) + c.rank, c.run_at))
    for task in order:
        if state.room.get(task.queue, 0) <= 0:
            continue
        start = _start_time(task, book, state)
        if start is None:
            continue
        for key in task.limit_keys:
            limit = book.for_key(key)
            if limit is None:
                continue
            if limit.max_running is not None:
                state.in_use[key] = state.in_use.get(key, 0) + 1
            if limit.per_second is not None:
                state.tat[key] = max(state.tat.get(key, start), start) + timedelta(seconds=1 / limit.per_second)
        state.room[task.queue] -= 1
        admitted.append((task.id, start))
    return admitted


def _start_time(task: Candidate, book: LimitBook, state: AdmissionState) -> datetime | None:
    """When the task may start under every key's limit; None when a key is full or out of tokens."""
    start = state.now
    for key in task.limit_keys:
        limit = book.for_key(key)
        if limit is None:
            continue
        if limit.max_running is not None and state.in_use.get(key, 0) >= limit.max_running:
            return None
        if limit.per_second is not None:
            # GCRA: conforming once now >= tat - (burst - 1) * interval
            interval = timedelta(seconds=1 / limit.per_second)
            earliest = state.tat.get(key, state.now) - (limit.effective_burst - 1) * interval
            if earliest - state.now > state.horizon:
                return None
            start = max(start, earliest)
    return start


def rank_candidates(rows: Iterable[Mapping[str, Any]]) -> list[Candidate]:
    """Candidates from rows grouped by (queue, fair-share key) in best-first order."""
    out: list[Candidate] = []
    last: tuple[str, str] | None = None
    rank = 0
    for row in rows:
        group = (row["queue"], row["fk"])
        rank = rank + 1 if group == last else 0
        last = group
        out.append(
            Candidate(row["id"], row["queue"], tuple(row["limit_keys"]), row["priority"], row["run_at"], rank, group)
        )
    return out
