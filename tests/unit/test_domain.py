from __future__ import annotations

import random

import pytest

from taskcore.domain import WAITING_STATES, BackoffPolicy, TaskStatus
from taskcore.store.states import sql_states


def test_every_store_guard_agrees_with_the_transition_table() -> None:
    # The store composes its guards at import and refuses one the table does not allow.
    with pytest.raises(ValueError, match="does not allow"):
        sql_states({TaskStatus.SUCCEEDED}, entering=TaskStatus.RUNNING)
    assert sql_states(WAITING_STATES, entering=TaskStatus.RUNNING) == "('queued', 'scheduled')"


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
