from __future__ import annotations

import random

import pytest

from taskcore.domain import TERMINAL_STATES, TRANSITIONS, BackoffPolicy, TaskStatus, can_transition


def test_terminal_states_only_leave_by_manual_retry() -> None:
    assert {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED} == TERMINAL_STATES
    assert TRANSITIONS[TaskStatus.SUCCEEDED] == frozenset()
    for status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        assert TRANSITIONS[status] == {TaskStatus.QUEUED}


@pytest.mark.parametrize("waiting", [TaskStatus.QUEUED, TaskStatus.SCHEDULED])
def test_waiting_tasks_are_claimed_or_cancelled(waiting: TaskStatus) -> None:
    assert can_transition(waiting, TaskStatus.RUNNING)
    assert can_transition(waiting, TaskStatus.CANCELLED)
    assert not can_transition(waiting, TaskStatus.SUCCEEDED)
    assert not can_transition(waiting, TaskStatus.FAILED)


def test_only_running_tasks_finish() -> None:
    finishing = {TaskStatus.SUCCEEDED, TaskStatus.FAILED}
    for status in TaskStatus:
        assert bool(TRANSITIONS[status] & finishing) == (status is TaskStatus.RUNNING)


def test_every_state_has_a_transition_entry() -> None:
    assert set(TRANSITIONS) == set(TaskStatus)
    assert all(status.terminal == (status in TERMINAL_STATES) for status in TaskStatus)


def test_backoff_grows_exponentially_within_equal_jitter_bounds() -> None:
    policy = BackoffPolicy(base_seconds=1, max_seconds=1000)
    rng = random.Random(7)
    for attempt in range(1, 8):
        full = 2.0 ** (attempt - 1)
        for _ in range(50):
            delay = policy.delay(attempt, rng=rng)
            assert full / 2 <= delay <= full


def test_backoff_is_capped() -> None:
    policy = BackoffPolicy(base_seconds=1, max_seconds=10)
    assert all(5 <= policy.delay(40) <= 10 for _ in range(100))


def test_backoff_jitter_spreads_retries() -> None:
    policy = BackoffPolicy(base_seconds=1, max_seconds=100)
    rng = random.Random(1)
    assert len({round(policy.delay(5, rng=rng), 6) for _ in range(20)}) > 10
