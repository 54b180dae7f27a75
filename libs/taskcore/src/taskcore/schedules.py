"""Schedules: when a schedule's slots fall (cron in a time zone, or a fixed interval) and which
due slots a firing runs. Pure computation; the store fires them (taskcore.store.schedules).

Cron expressions are read by cronsim (the parser healthchecks.io runs), five fields only, in the
schedule's IANA time zone. Its DST rules are Debian cron's, and TaskFlow keeps them:

- an expression with a fixed minute and hour (``30 2 * * *``) runs once per matching day: a time
  that does not exist (the spring-forward gap) runs at the first minute after the gap (03:00 in
  Europe/Paris), and a time that exists twice (fall-back) runs at its first occurrence only;
- an expression with a wildcard minute or hour (``*/15 * * * *``, ``0 * * * *``) follows the
  wall clock as it is: the skipped hour has no slots, the repeated hour has its slots twice.

``every_seconds`` slots are whole multiples of the interval since the Unix epoch (UTC), so they do
not move with restarts, time zones or DST.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from taskcore.errors import TaskValidationError

SCHEDULE_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"
CATCH_UP_CAP = 100  # catch_up "all" runs at most this many missed slots (the newest ones)
NEXT_RUNS = 3
MAX_EVERY_SECONDS = 366 * 24 * 3600
# catch_up "none": a due slot older than this when the leader gets to it was missed (downtime)
ON_TIME_SECONDS = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Overlap(StrEnum):
    SKIP = "skip"  # no new run while the schedule's last run is not terminal
    ALLOW = "allow"


class CatchUp(StrEnum):
    NONE = "none"  # missed slots are dropped; only a slot that is on time runs
    LATEST = "latest"  # after downtime, the newest missed slot runs once
    ALL = "all"  # every missed slot runs, at most CATCH_UP_CAP (the newest)


def _invalid(field: str, message: str, kind: str = "value_error") -> TaskValidationError:
    return TaskValidationError(f"{field} {message}", [{"field": field, "message": message, "type": kind}])


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule's slots fall: a cron expression in a time zone, or every N seconds."""

    cron: str | None = None
    every_seconds: int | None = None
    timezone: str = "UTC"

    @classmethod
    def checked(cls, cron: str | None, every_seconds: int | None, timezone: str) -> Timing:
        """A valid timing, or TaskValidationError naming the field."""
        if (cron is None) == (every_seconds is None):
            raise _invalid("cron", "give exactly one of cron and every_seconds")
        zone = _zone(timezone)
        if every_seconds is not None and not 1 <= every_seconds <= MAX_EVERY_SECONDS:
            raise _invalid("every_seconds", f"must be between 1 and {MAX_EVERY_SECONDS}")
        if cron is not None:
            cron = " ".join(cron.split())
            if len(cron.split(" ")) != 5:
                raise _invalid("cron", "must have five fields: minute hour day-of-month month day-of-week")
            try:
                next(CronSim(cron, datetime.now(zone)))
            except (CronSimError, StopIteration) as exc:
                raise _invalid("cron", f"is not a valid cron expression: {exc or 'never matches'}") from exc
        return cls(cron=cron, every_seconds=every_seconds, timezone=timezone)

    def after(self, moment: datetime) -> Iterator[datetime]:
        """The slots strictly after ``moment``, in order, as UTC datetimes."""
        if self.every_seconds is not None:
            step = self.every_seconds
            k = int((moment - _EPOCH).total_seconds() // step) + 1
            while True:
                yield _EPOCH + timedelta(seconds=k * step)
                k += 1
        assert self.cron is not None
        for slot in CronSim(self.cron, moment.astimezone(ZoneInfo(self.timezone))):
            yield slot.astimezone(UTC)

    def next_after(self, moment: datetime) -> datetime:
        return next(self.after(moment))

    def upcoming(self, start: datetime, count: int = NEXT_RUNS) -> list[datetime]:
        """``start`` (a slot) and the ``count - 1`` slots after it."""
        slots = [start]
        for slot in self.after(start):
            if len(slots) >= count:
                break
            slots.append(slot)
        return slots

    def latest(self, since: datetime, until: datetime, limit: int) -> list[datetime]:
        """The newest ``limit`` slots in [since, until], oldest first."""
        if self.every_seconds is not None:
            step = self.every_seconds
            last = int((until - _EPOCH).total_seconds() // step)
            first = max(int(-((_EPOCH - since).total_seconds() // step)), last - limit + 1)
            return [_EPOCH + timedelta(seconds=k * step) for k in range(first, last + 1)]
        assert self.cron is not None
        found: list[datetime] = []
        zone = ZoneInfo(self.timezone)
        # cronsim's reverse walk starts strictly before its start: start just after ``until``
        for slot in CronSim(self.cron, (until + timedelta(seconds=1)).astimezone(zone), reverse=True):
            utc = slot.astimezone(UTC)
            if utc < since or len(found) >= limit:
                break
            if utc <= until:
                found.append(utc)
        return sorted(set(found))


def _zone(name: str) -> ZoneInfo:
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise _invalid("timezone", f"unknown IANA time zone {name!r}") from exc


def due_slots(timing: Timing, next_run_at: datetime, now: datetime, catch_up: CatchUp) -> list[datetime]:
    """The slots a firing at ``now`` runs, given the earliest unfired slot ``next_run_at``."""
    if next_run_at > now:
        return []
    if catch_up is CatchUp.ALL:
        return timing.latest(next_run_at, now, CATCH_UP_CAP)
    newest = timing.latest(next_run_at, now, 1)
    if catch_up is CatchUp.NONE and newest and (now - newest[0]).total_seconds() > ON_TIME_SECONDS:
        return []
    return newest


@dataclass(frozen=True, slots=True)
class TaskTemplate:
    """What each run of a schedule is, with the defaults resolved when the schedule was saved."""

    task_type: str
    payload: dict[str, Any]
    queue: str
    priority: int
    max_retries: int
    timeout_seconds: int
    limit_keys: tuple[str, ...] = ()
    callback_url: str | None = None  # every run carries it (taskcore.callbacks)

    def as_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "task_type": self.task_type,
            "payload": self.payload,
            "queue": self.queue,
            "priority": self.priority,
            "max_retries": self.max_retries,
            "timeout_seconds": self.timeout_seconds,
            "limit_keys": list(self.limit_keys),
        }
        if self.callback_url is not None:  # absent otherwise: templates stored before callbacks read the same
            value["callback_url"] = self.callback_url
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> TaskTemplate:
        return cls(**{**value, "limit_keys": tuple(value.get("limit_keys", ()))})


@dataclass(frozen=True, slots=True)
class LastRun:
    task_id: UUID
    scheduled_for: datetime
    status: str


@dataclass(frozen=True, slots=True)
class Schedule:
    id: UUID
    name: str
    timing: Timing
    task: TaskTemplate
    overlap: Overlap
    catch_up: CatchUp
    paused: bool
    next_run_at: datetime
    last_slot_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_runs: tuple[LastRun, ...] = ()

    def next_runs(self) -> list[datetime]:
        """The next NEXT_RUNS slots; none while paused (resuming starts from the time it resumes)."""
        return [] if self.paused else self.timing.upcoming(self.next_run_at)


def check_name(name: str) -> str:
    if not re.fullmatch(SCHEDULE_NAME_PATTERN, name):
        raise _invalid("name", f"must match {SCHEDULE_NAME_PATTERN}")
    return name
