"""Property test of the task state machine against the real database (hypothesis stateful testing).

Hypothesis drives random sequences of everything that changes a task — submit, claim (with a
live or an already expired lease), succeed / fail / retry later / release / record a cancel,
each by the current attempt or by a stale one (a late worker or a duplicate delivery), a user's
cancel and retry, and the reconciler's lease recovery — through ``TaskRepository``'s guarded
UPDATEs on PostgreSQL. A plain Python model says what each step must do. After every step the
database must match the model exactly, and every status change observed must be one that
``taskcore.domain.TRANSITIONS`` allows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule, run_state_machine_as_test

from taskcore.domain import TERMINAL_STATES, TRANSITIONS, WAITING_STATES, NewTask, TaskStatus
from taskcore.errors import InvalidTransition
from taskcore.store import TaskRepository, create_pool
from tests.conftest import create_database, drop_database

T = TypeVar("T")
S = TaskStatus
ERROR = {"type": "Test", "message": "property test"}


@dataclass
class Model:
    """What a task must look like after each step."""

    status: TaskStatus
    attempt: int
    max_retries: int
    due: bool
    cancel_requested: bool = False
    lease_expired: bool = False


@pytest.fixture(scope="module")
def machine_database() -> Iterator[str]:
    name = f"taskflow_prop_{uuid.uuid4().hex[:10]}"
    loop = asyncio.new_event_loop()
    try:
        url = loop.run_until_complete(create_database(name))
        yield url
        loop.run_until_complete(drop_database(name))
    finally:
        loop.close()


class TaskLifecycle(RuleBasedStateMachine):
    database_url = ""
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()  # private: never set as the thread's current loop
        self.pool: asyncpg.Pool = self.run(create_pool(self.database_url, max_size=2))
        self.repo = TaskRepository(self.pool)
        self.run(self.pool.execute("TRUNCATE tasks"))
        self.model: dict[uuid.UUID, Model] = {}
        self.seen: dict[uuid.UUID, TaskStatus] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.pool.close())
        self.loop.close()

    # -- steps ------------------------------------------------------------------------------------

    @rule(target=tasks, delayed=st.booleans(), max_retries=st.integers(0, 2))
    def submit(self, delayed: bool, max_retries: int) -> uuid.UUID:
        run_at = datetime.now(UTC) + timedelta(hours=1) if delayed else None
        new = NewTask(uuid.uuid4(), "test", {}, priority=0, max_retries=max_retries, timeout_seconds=30, run_at=run_at)
        task, created = self.run(self.repo.insert(new))
        assert created
        self.model[task.id] = Model(S.SCHEDULED if delayed else S.QUEUED, 0, max_retries, due=not delayed)
        return task.id

    @rule(task_id=tasks, expired=st.booleans())
    def claim(self, task_id: uuid.UUID, expired: bool) -> None:
        m = self.model[task_id]
        claimed = self.run(self.repo.claim(task_id, worker_id="w", lease_seconds=0.001 if expired else 3600))
        if m.status in WAITING_STATES and m.due:
            assert claimed is not None
            assert claimed.attempt == m.attempt + 1
            m.status, m.attempt, m.lease_expired = S.RUNNING, m.attempt + 1, expired
        else:
            assert claimed is None, "claimed a task that is running, finished or not due"

    def _finish(self, task_id: uuid.UUID, stale: bool, *, applies: bool) -> tuple[Model, int, bool]:
        m = self.model[task_id]
        attempt = m.attempt - 1 if stale else m.attempt
        return m, attempt, applies and m.status is S.RUNNING and not stale

    @rule(task_id=tasks, stale=st.booleans())
    def succeed(self, task_id: uuid.UUID, stale: bool) -> None:
        m, attempt, expected = self._finish(task_id, stale, applies=True)
        assert self.run(self.repo.mark_succeeded(task_id, attempt, {"ok": True})) is expected
        if expected:
            m.status = S.SUCCEEDED

    @rule(task_id=tasks, stale=st.booleans())
    def fail(self, task_id: uuid.UUID, stale: bool) -> None:
        m, attempt, expected = self._finish(task_id, stale, applies=True)
        assert self.run(self.repo.mark_failed(task_id, attempt, ERROR)) is expected
        if expected:
            m.status = S.FAILED

    @rule(task_id=tasks, stale=st.booleans(), soon=st.booleans())
    def retry_later(self, task_id: uuid.UUID, stale: bool, soon: bool) -> None:
        m, attempt, expected = self._finish(task_id, stale, applies=True)
        scheduled = self.run(self.repo.mark_retry(task_id, attempt, ERROR, 0 if soon else 3600))
        assert (scheduled is not None) is expected
        if expected:
            m.status, m.due = S.SCHEDULED, soon

    @rule(task_id=tasks, stale=st.booleans())
    def release(self, task_id: uuid.UUID, stale: bool) -> None:
        m, attempt, expected = self._finish(task_id, stale, applies=True)
        assert self.run(self.repo.release(task_id, attempt)) is expected
        if expected:
            m.status, m.attempt, m.due = S.QUEUED, m.attempt - 1, True

    @rule(task_id=tasks, stale=st.booleans())
    def record_cancel(self, task_id: uuid.UUID, stale: bool) -> None:
        m, attempt, expected = self._finish(task_id, stale, applies=self.model[task_id].cancel_requested)
        assert self.run(self.repo.mark_cancelled(task_id, attempt)) is expected
        if expected:
            m.status = S.CANCELLED

    @rule(task_id=tasks)
    def cancel(self, task_id: uuid.UUID) -> None:
        m = self.model[task_id]
        if m.status in TERMINAL_STATES:
            with pytest.raises(InvalidTransition):
                self.run(self.repo.cancel(task_id))
            return
        task = self.run(self.repo.cancel(task_id))
        m.cancel_requested = True
        if m.status is not S.RUNNING:
            m.status = S.CANCELLED
        assert task.status is m.status

    @rule(task_id=tasks)
    def user_retry(self, task_id: uuid.UUID) -> None:
        m = self.model[task_id]
        if m.status not in (S.FAILED, S.CANCELLED):
            with pytest.raises(InvalidTransition):
                self.run(self.repo.retry(task_id))
            return
        task = self.run(self.repo.retry(task_id))
        assert (task.status, task.attempt) == (S.QUEUED, 0)
        m.status, m.attempt, m.due, m.cancel_requested = S.QUEUED, 0, True, False

    @rule()
    def recover_expired(self) -> None:
        recovered = {r.id: r.status for r in self.run(self.repo.recover_expired(limit=1000, error=ERROR))}
        expected = {}
        for task_id, m in self.model.items():
            if m.status is S.RUNNING and m.lease_expired:
                if m.cancel_requested:
                    m.status = S.CANCELLED
                elif m.attempt <= m.max_retries:
                    m.status, m.due = S.SCHEDULED, True
                else:
                    m.status = S.FAILED
                expected[task_id] = m.status
        assert recovered == expected

    @rule(task_id=consumes(tasks))
    def forget(self, task_id: uuid.UUID) -> None:
        """Stop touching a task (keeps the bundle small); it is still checked by the invariant."""

    # -- what must always hold ----------------------------------------------------------------------

    @invariant()
    def database_matches_the_model(self) -> None:
        rows = self.run(self.pool.fetch("SELECT id, status, attempt, cancel_requested, finished_at FROM tasks"))
        assert len(rows) == len(self.model)
        for row in rows:
            m = self.model[row["id"]]
            status = TaskStatus(row["status"])
            assert (status, row["attempt"], row["cancel_requested"]) == (m.status, m.attempt, m.cancel_requested)
            assert (row["finished_at"] is not None) is status.terminal
            before = self.seen.get(row["id"])
            assert before is None or before is status or status in TRANSITIONS[before], (before, status)
            self.seen[row["id"]] = status


def test_task_state_machine_against_postgresql(machine_database: str) -> None:
    TaskLifecycle.database_url = machine_database
    run_state_machine_as_test(
        TaskLifecycle,
        settings=settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        ),
    )


def test_transition_table_is_closed_and_terminal_states_only_go_back_by_retry() -> None:
    assert set(TRANSITIONS) == set(TaskStatus)
    for source, targets in TRANSITIONS.items():
        assert source not in targets
        if source.terminal:
            assert targets <= {S.QUEUED}, source
    assert TRANSITIONS[S.SUCCEEDED] == frozenset()
