from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from taskflow_api.schemas import TaskCreate


def test_minimal_submit() -> None:
    body = TaskCreate.model_validate({"task_type": "test", "payload": {"message": "Hello"}})
    assert (body.priority, body.max_retries, body.run_at, body.delay_seconds) == (0, None, None, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task_type": "", "payload": {}}, "task_type"),
        ({"task_type": "t", "payload": []}, "payload"),
        ({"task_type": "t", "payload": {}, "priority": 10}, "priority"),
        ({"task_type": "t", "payload": {}, "priority": "high"}, "priority"),
        ({"task_type": "t", "payload": {}, "max_retries": -1}, "max_retries"),
        ({"task_type": "t", "payload": {}, "timeout_seconds": 0}, "timeout_seconds"),
        ({"task_type": "t", "payload": {}, "delay_seconds": -1}, "delay_seconds"),
        ({"task_type": "t", "payload": {}, "run_at": "2030-01-01T00:00:00"}, "run_at"),
        ({"task_type": "t", "payload": {}, "run_at": 1900000000}, "run_at"),  # not a Unix time
        ({"task_type": "t", "payload": {}, "run_at": "0.0"}, "run_at"),
        ({"task_type": "t", "payload": {}, "surprise": 1}, "surprise"),
    ],
)
def test_bad_fields_are_named(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        TaskCreate.model_validate(body)
    assert field in {str(e["loc"][0]) for e in err.value.errors()}


def test_run_at_and_delay_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="either run_at or delay_seconds"):
        TaskCreate.model_validate(
            {"task_type": "t", "payload": {}, "run_at": "2030-01-01T00:00:00Z", "delay_seconds": 5}
        )
