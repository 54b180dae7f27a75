"""TaskRequest: the one submit shape, and the fingerprint an Idempotency-Key repeat must match."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from taskcore.service import TaskRequest

BASE = TaskRequest(task_type="test", payload={"a": 1})
# A value other than BASE's for every field: a field missing here fails the test below.
CHANGED: dict[str, Any] = {
    "task_type": "other",
    "payload": {"a": 2},
    "priority": 5,
    "max_retries": 0,
    "timeout_seconds": 7,
    "run_at": datetime(2030, 1, 1, tzinfo=UTC),
    "delay_seconds": 3.0,
    "queue": "reports",
    "limit_keys": ("tenant:1",),
    "depends_on": (UUID(int=1),),
    "unique_key": "report:42",
    "unique_for_seconds": 60,
    "callback_url": "https://example.com/hook",
}


def test_every_field_is_part_of_the_fingerprint() -> None:
    assert set(CHANGED) == {f.name for f in fields(TaskRequest)}
    for name, value in CHANGED.items():
        assert replace(BASE, **{name: value}).fingerprint() != BASE.fingerprint(), name


def test_payload_key_order_and_a_delays_run_at_do_not_count() -> None:
    assert TaskRequest(task_type="t", payload={"a": 1, "b": 2}).fingerprint() == (
        TaskRequest(task_type="t", payload={"b": 2, "a": 1}).fingerprint()
    )
    delayed = TaskRequest(task_type="t", payload={}, delay_seconds=5)
    assert replace(delayed, run_at=datetime(2030, 1, 1, tzinfo=UTC)).fingerprint() == delayed.fingerprint()


@pytest.mark.parametrize(
    ("request_", "stored"),
    [
        (
            TaskRequest(
                task_type="test",
                payload={"b": 2, "a": 1},
                priority=3,
                max_retries=2,
                timeout_seconds=30,
                delay_seconds=12.5,
            ),
            "db78b86e8d9f795668cfe82fcd5d523434004a0942644e08655dff4b6ec27dfa",
        ),
        (
            TaskRequest(task_type="test", payload={"a": 1}, run_at=datetime(2030, 1, 1, tzinfo=UTC)),
            "c2707ae68282617e35b632dba17085ffe6549aed1266589b32b89e9165939e18",
        ),
    ],
)
def test_fingerprints_already_stored_stay_valid(request_: TaskRequest, stored: str) -> None:
    """A repeat after an upgrade must still match the key's original request (values from release 1.0)."""
    assert request_.fingerprint() == stored


def test_it_is_built_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        TaskRequest("test", {})  # type: ignore[misc]  # positional: refused
