"""Slot computation: cron in a time zone (both DST transitions of Europe/Paris), fixed intervals,
and which due slots a firing runs under each catch_up rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskcore.errors import TaskValidationError
from taskcore.schedules import CATCH_UP_CAP, CatchUp, Timing, due_slots

PARIS = "Europe/Paris"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def slots(timing: Timing, start: datetime, count: int) -> list[datetime]:
    out = []
    for slot in timing.after(start):
        if len(out) == count:
            break
        out.append(slot)
    return out


def test_a_daily_job_in_the_spring_forward_gap_runs_once_right_after_the_gap() -> None:
    daily = Timing.checked("30 2 * * *", None, PARIS)  # 02:30 does not exist on 2026-03-29
    assert slots(daily, utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: the first minute after the gap, once
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_a_daily_job_in_the_repeated_hour_runs_once_at_its_first_occurrence() -> None:
    daily = Timing.checked("30 2 * * *", None, PARIS)  # 02:30 happens twice on 2026-10-25
    assert slots(daily, utc(2026, 10, 24, 12), 2) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_a_wildcard_job_follows_the_wall_clock_through_both_transitions() -> None:
    hourly = Timing.checked("0 * * * *", None, PARIS)
    # spring: 01:00 CET, then 03:00 CEST (02:00 never happens): one real hour apart
    assert slots(hourly, utc(2026, 3, 28, 23, 30), 3) == [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)]
    half = Timing.checked("*/30 * * * *", None, PARIS)
    # fall: 02:00 and 02:30 run in CEST and again in CET, every real half hour
    assert slots(half, utc(2026, 10, 24, 23, 45), 5) == [
        utc(2026, 10, 25, 0, 0),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 0),
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 0),
    ]


def test_every_seconds_slots_are_multiples_of_the_interval_since_the_epoch() -> None:
    every = Timing.checked(None, 30, PARIS)  # the time zone does not move them
    assert slots(every, utc(2026, 3, 29, 0, 59, 50), 3) == [
        utc(2026, 3, 29, 1, 0, 0),
        utc(2026, 3, 29, 1, 0, 30),
        utc(2026, 3, 29, 1, 1, 0),
    ]
    assert every.next_after(utc(2026, 1, 1, 0, 0, 30)) == utc(2026, 1, 1, 0, 1, 0)  # strictly after


@pytest.mark.parametrize(
    ("start", "end"),
    [(utc(2026, 10, 24, 22), utc(2026, 10, 25, 3)), (utc(2026, 3, 28, 22), utc(2026, 3, 29, 3))],
)
def test_latest_matches_the_forward_walk_for_cron_and_every(start: datetime, end: datetime) -> None:
    """The newest slots (catch-up walks backwards) are the forward walk's, across both DST changes."""
    start, end = start - timedelta(days=1), end + timedelta(days=1)
    for timing in (
        Timing.checked("*/7 1-3 * * *", None, PARIS),
        Timing.checked("30 2 * * *", None, PARIS),
        Timing.checked("0 * * * *", None, PARIS),
        Timing.checked(None, 45, "UTC"),
    ):
        forward = [s for s in slots(timing, start - timedelta(seconds=1), 5000) if s <= end]
        assert timing.latest(start, end, 5000) == forward
        assert timing.latest(start, end, 5) == forward[-5:]


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        (CatchUp.NONE, []),  # the newest missed slot is 5 minutes old: downtime, dropped
        (CatchUp.LATEST, [utc(2026, 1, 1, 0, 30)]),
        (CatchUp.ALL, [utc(2026, 1, 1, 0, m) for m in (0, 10, 20, 30)]),
    ],
)
def test_catch_up_after_downtime(catch_up: CatchUp, expected: list[datetime]) -> None:
    tenly = Timing.checked("*/10 * * * *", None, "UTC")
    assert due_slots(tenly, utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 35), catch_up) == expected


def test_on_time_slots_run_under_every_rule_and_all_is_capped() -> None:
    every = Timing.checked(None, 1, "UTC")
    now = utc(2026, 1, 1, 0, 0, 5) + timedelta(milliseconds=300)
    for rule in CatchUp:
        assert due_slots(every, utc(2026, 1, 1, 0, 0, 5), now, rule) == [utc(2026, 1, 1, 0, 0, 5)]
    assert due_slots(every, now + timedelta(seconds=1), now, CatchUp.ALL) == []  # nothing due yet
    many = due_slots(every, utc(2026, 1, 1), utc(2026, 1, 2), CatchUp.ALL)
    assert len(many) == CATCH_UP_CAP
    assert many[-1] == utc(2026, 1, 2)


@pytest.mark.parametrize(
    ("cron", "every", "zone", "field"),
    [
        ("*/5 * * *", None, "UTC", "cron"),  # four fields
        ("61 * * * *", None, "UTC", "cron"),
        ("not a cron", None, "UTC", "cron"),
        ("0 0 31 2 *", None, "UTC", "cron"),  # never matches
        ("*/5 * * * *", 30, "UTC", "cron"),  # both
        (None, None, "UTC", "cron"),  # neither
        ("*/5 * * * *", None, "Mars/Olympus", "timezone"),
        ("*/5 * * * *", None, "../etc/passwd", "timezone"),
        (None, 0, "UTC", "every_seconds"),
    ],
)
def test_bad_timings_name_the_field(cron: str | None, every: int | None, zone: str, field: str) -> None:
    with pytest.raises(TaskValidationError) as raised:
        Timing.checked(cron, every, zone)
    assert [e["field"] for e in raised.value.errors] == [field]
