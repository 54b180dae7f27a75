from __future__ import annotations

from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from taskcore.domain import Task, TaskStatus
from taskcore.service import TaskRequest
from taskflow_api.schemas import TaskCreate, TaskOut


def test_minimal_submit() -> None:
    body = TaskCreate.model_validate({"task_type": "test", "payload": {"message": "Hello"}})
    assert (body.priority, body.max_retries, body.run_at, body.delay_seconds) == (0, None, None, None)


@pytest.mark.parametrize(
    "schedule", [{"run_at": "2030-01-01T12:00:00+02:00"}, {"delay_seconds": 2.5}], ids=["run_at", "delay"]
)
def test_the_body_becomes_the_request_field_for_field(schedule: dict[str, Any]) -> None:
    """One shape: every body field reaches the service (single, batch and the dashboard form all use to_request)."""
    assert set(TaskCreate.model_fields) == {f.name for f in fields(TaskRequest)}
    body = TaskCreate.model_validate(
        {"task_type": "t", "payload": {"k": [1]}, "priority": 4, "max_retries": 1, "timeout_seconds": 9, **schedule}
    )
    assert asdict(body.to_request()) == body.model_dump()


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


@pytest.mark.parametrize("finished", [False, True], ids=["waiting", "finished"])
def test_the_task_answer_is_what_a_validated_model_would_serialise(finished: bool) -> None:
    """Hot routes answer ``TaskOut.of(task).json_response()``, built without validation: the bytes
    must be those of the validated model FastAPI's response_model would have produced."""
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    task = Task(
        id=uuid4(),
        task_type="test",
        payload={"message": "hi", "n": [1, 2.5, None, True], "nested": {"x": "é"}},
        status=TaskStatus.SUCCEEDED if finished else TaskStatus.QUEUED,
        priority=3,
        attempt=1 if finished else 0,
        max_retries=2,
        timeout_seconds=30,
        created_at=now,
        updated_at=now,
        run_at=now,
        started_at=now if finished else None,
        finished_at=now + timedelta(seconds=1) if finished else None,
        cancel_requested=False,
        result={"echo": {"message": "hi"}, "big": 12345678901234567890} if finished else None,
        error={"type": "Boom", "message": "x"} if finished else None,
    )
    built = TaskOut.of(task)
    validated = TaskOut.model_validate(built.model_dump())
    response = built.json_response(202, {"Location": "/x"})
    assert response.body == validated.model_dump_json().encode()
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    assert response.headers["location"] == "/x"
