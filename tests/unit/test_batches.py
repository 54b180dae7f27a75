"""A batch's Idempotency-Key fingerprint and its answer (taskcore.batches)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import orjson

from taskcore.batches import OnComplete, batch_answer, batch_fingerprint
from taskcore.domain import TaskStatus
from taskcore.service import TaskRequest
from taskcore.store.repository import Inserted


def request(**payload: object) -> TaskRequest:
    return TaskRequest(task_type="test", payload=dict(payload))


def test_the_fingerprint_ignores_payload_key_order_and_sees_everything_else() -> None:
    base = batch_fingerprint([request(a=1, b=2)], [None], None)
    assert batch_fingerprint([request(b=2, a=1)], [None], None) == base
    assert batch_fingerprint([request(a=1, b=3)], [None], None) != base
    assert batch_fingerprint([request(a=1, b=2)], ["k"], None) != base
    assert batch_fingerprint([request(a=1, b=2), request()], [None, None], None) != base
    callback = OnComplete(task_type="test", payload={"message": "x"})
    with_callback = batch_fingerprint([request(a=1, b=2)], [None], callback)
    assert with_callback != base
    assert batch_fingerprint([request(a=1, b=2)], [None], OnComplete(task_type="test", payload={"message": "y"})) != (
        with_callback
    )


def test_the_answer_names_the_batch_and_marks_duplicates() -> None:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    batch_id, stored, held = uuid4(), uuid4(), uuid4()
    items = [
        Inserted(stored, TaskStatus.QUEUED, 0, now, now),
        Inserted(held, TaskStatus.RUNNING, 0, now, now, duplicate_of=held, replayed=True),
    ]
    answer = orjson.loads(batch_answer(batch_id, items))
    assert answer["batch_id"] == str(batch_id)
    assert answer["count"] == 2
    first, second = answer["items"]
    assert "duplicate_of" not in first
    assert first["location"] == f"/api/v1/tasks/{stored}"
    assert second["duplicate_of"] == str(held)
    assert second["duplicate"] is True
    assert second["idempotent_replay"] is True
    assert first["created_at"] == "2026-12-04T00:00:00Z"
