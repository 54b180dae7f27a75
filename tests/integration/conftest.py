from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

import pytest

from taskcore.domain import NewTask, Task
from taskcore.store import TaskRepository


@pytest.fixture(autouse=True)
def _clean(clean: None) -> None:
    """Integration tests share the session database: each leaves it empty."""


def new_task(
    task_type: str = "test", payload: dict[str, Any] | None = None, *, run_at: datetime | None = None, **kw: Any
) -> NewTask:
    values: dict[str, Any] = {"priority": 0, "max_retries": 2, "timeout_seconds": 30} | kw
    return NewTask(id=uuid4(), task_type=task_type, payload=payload or {"message": "hi"}, run_at=run_at, **values)


async def stored(repo: TaskRepository, **kw: Any) -> Task:
    task, created = await repo.insert(new_task(**kw))
    assert created
    return task
