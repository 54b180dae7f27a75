from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from taskcore.domain import Task, TaskStatus
from taskcore.errors import TaskValidationError
from taskcore.store.repository import decode_cursor, encode_cursor


def test_cursor_round_trips_created_at_and_id() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    task = Task(
        id=uuid4(), task_type="t", payload={}, status=TaskStatus.QUEUED, priority=0, attempt=0, max_retries=0,
        timeout_seconds=1, created_at=now, updated_at=now, run_at=now, started_at=None, finished_at=None,
        cancel_requested=False, result=None, error=None,
    )  # fmt: skip
    assert decode_cursor(encode_cursor(task)) == (now, task.id)


@pytest.mark.parametrize("garbage", ["", "!!!", "bm90IGpzb24", "WzEsMl0", "WyJ4IiwieSJd"])
def test_garbage_cursors_are_a_validation_error(garbage: str) -> None:
    with pytest.raises(TaskValidationError) as err:
        decode_cursor(garbage)
    assert err.value.errors[0]["field"] == "cursor"
