"""Property test of the task state machine against the real database (hypothesis stateful testing).

Hypothesis drives random sequences of everything that changes a task — submit, claim (with a
live or an already expired lease), succeed / fail / retry later / release / record a cancel,
each by the current attempt or by a stale one (a late worker or a duplicate delivery), a user's
cancel and retry, the reconciler's lease recovery, and tasks that depend on others (blocked until
their parents succeed, cancelled as UpstreamFailed when one fails for good or is cancelled,
re-armed when it is retried) — through ``TaskRepository``'s guarded UPDATEs on PostgreSQL. A
plain Python model says what each step must do. After every step the database must match the
model exactly, and every status change observed must be one that ``taskcore.domain.TRANSITIONS``
allows — and the task's history (migration 0012) must be that path: each entry starting where the
one before ended, each a transition of the table, each made by someone, ending in the current state.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from taskcore.domain import TERMINAL_STATES, TRANSITIONS, WAITING_STATES, NewTask, TaskStatus
from taskcore.errors import InvalidTransition
from taskcore.store import TaskRepository, create_pool
from taskcore.store.workflows import WorkflowRepository
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
    parents: tuple[uuid.UUID, ...] = ()
    delayed: bool = False  # unblocked into scheduled (its run_at is ahead), not queued
    upstream: bool = False  # cancelled because a task upstream failed for good or was cancelled


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
        self.deps = WorkflowRepository(self.pool)
        self.run(self.pool.execute("TRUNCATE tasks, task_dependencies, task_history"))
        self.model: dict[uuid.UUID, Model] = {}
        self.children: dict[uuid.UUID, list[uuid.UUID]] = {}
        self.seen: dict[uuid.UUID, TaskStatus] = {}
        self.history_seen: dict[uuid.UUID, int] = {}  # entries of each task's history at the last check

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
        self.children[task.id] = []
        return task.id

    @rule(target=tasks, parents=st.lists(tasks, min_size=1, max_size=3, unique=True), delayed=st.booleans())
    def submit_child(self, parents: list[uuid.UUID], delayed: bool) -> uuid.UUID:
        run_at = datetime.now(UTC) + timedelta(hours=1) if delayed else None
        new = NewTask(uuid.uuid4(), "test", {}, priority=0, max_retries=1, timeout_seconds=30, run_at=run_at)
        task = self.run(self.deps.insert_dependent(new, parents))
        assert task is not None
        statuses = [self.model[p].status for p in parents]
        m = Model(S.QUEUED, 0, 1, due=not delayed, parents=tuple(parents), delayed=delayed)
        if any(s in (S.FAILED, S.CANCELLED) for s in statuses):
            m.status, m.upstream, m.due = S.CANCELLED, True, False
        elif any(s is not S.SUCCEEDED for s in statuses):
            m.status, m.due = S.BLOCKED, False
        elif delayed:
            m.status = S.SCHEDULED
        assert task.status is m.status
        self.model[task.id] = m
        self.children[task.id] = []
        for parent in parents:
            self.children[parent].append(task.id)
        return task.id

    @rule(target=tasks, fan=st.integers(1, 2), deep=st.booleans())
    def submit_family(self, fan: int, deep: bool) -> MultipleResults[uuid.UUID]:
        """A parent with children (and a grandchild): what workflows are made of."""
        parent = self.submit(delayed=False, max_retries=1)
        kids = [self.submit_child([parent], delayed=False) for _ in range(fan)]
        if deep:
            kids.append(self.submit_child(kids, delayed=False))
        return multiple(parent, *kids)

    # -- what the dependencies do, in the model ----------------------------------------------------

    def _descendants(self, root: uuid.UUID) -> list[uuid.UUID]:
        found: list[uuid.UUID] = []
        stack = [root]
        while stack:
            for child in self.children[stack.pop()]:
                if child not in found:
                    found.append(child)
                    stack.append(child)
        return found

    def _ended(self, task_id: uuid.UUID) -> None:
        """A task failed for good or was cancelled: its blocked descendants are cancelled."""
        for child in self._descendants(task_id):
            m = self.model[child]
            if m.status is S.BLOCKED:
                m.status, m.upstream = S.CANCELLED, True

    def _succeeded(self, task_id: uuid.UUID) -> None:
        for child in self.children[task_id]:
            m = self.model[child]
            if m.status is S.BLOCKED and all(self.model[p].status is S.SUCCEEDED for p in m.parents):
                m.status, m.due = (S.SCHEDULED, False) if m.delayed else (S.QUEUED, True)

    def _rearm(self, task_id: uuid.UUID) -> None:
        rearmed: list[uuid.UUID] = []
        stack = [task_id]
        while stack:
            for child in self.children[stack.pop()]:
                m = self.model[child]
                if child not in rearmed and m.status is S.CANCELLED and m.upstream:
                    rearmed.append(child)
                    stack.append(child)
        for child in rearmed:
            m = self.model[child]
            m.status, m.attempt, m.cancel_requested, m.upstream, m.delayed, m.due = (
                S.BLOCKED,
                0,
                False,
                False,
                False,
                False,
            )
        still_failed = {
            p
            for child in rearmed
            for p in self.model[child].parents
            if p != task_id and self.model[p].status in (S.FAILED, S.CANCELLED)
        }
        for parent in still_failed:
            self._ended(parent)

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

    @rule(task_id=tasks, succeeds=st.booleans())
    def work(self, task_id: uuid.UUID, succeeds: bool) -> None:
        """A worker's whole run: claim, then succeed or fail for good (so dependencies get exercised)."""
        self.claim(task_id, expired=False)
        self.database_matches_the_model()  # each transition is checked against the table on its own
        m = self.model[task_id]
        if m.status is S.RUNNING:
            if succeeds:
                self.succeed(task_id, stale=False)
            else:
                self.fail(task_id, stale=False)

    def _parents_to_run(self) -> list[uuid.UUID]:
        return sorted(t for t, m in self.model.items() if self.children[t] and m.status in WAITING_STATES and m.due)

    # ``work`` on a task that others wait for: random draws alone seldom reach one.
    @precondition(lambda self: bool(self._parents_to_run()))
    @rule()
    def a_parent_succeeds(self) -> None:
        self.work(self._parents_to_run()[0], succeeds=True)

    @precondition(lambda self: bool(self._parents_to_run()))
    @rule()
    def a_parent_fails(self) -> None:
        self.work(self._parents_to_run()[-1], succeeds=False)

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
            self._succeeded(task_id)

    @rule(task_id=tasks, stale=st.booleans())
    def fail(self, task_id: uuid.UUID, stale: bool) -> None:
        m, attempt, expected = self._finish(task_id, stale, applies=True)
        assert self.run(self.repo.mark_failed(task_id, attempt, ERROR)) is expected
        if expected:
            m.status = S.FAILED
            self._ended(task_id)

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
            self._ended(task_id)

    @rule(task_id=tasks)
    def cancel(self, task_id: uuid.UUID) -> None:
        m = self.model[task_id]
        if m.status in TERMINAL_STATES:
            with pytest.raises(InvalidTransition):
                self.run(self.repo.cancel(task_id, actor="api:prop"))
            return
        task = self.run(self.repo.cancel(task_id, actor="api:prop"))
        m.cancel_requested = True
        if m.status is not S.RUNNING:
            m.status = S.CANCELLED
            self._ended(task_id)
        assert task.status is m.status

    @rule(task_id=tasks)
    def user_retry(self, task_id: uuid.UUID) -> None:
        m = self.model[task_id]
        upstream = [self.model[p].status for p in m.parents]
        if m.status not in (S.FAILED, S.CANCELLED) or any(s in (S.FAILED, S.CANCELLED) for s in upstream):
            with pytest.raises(InvalidTransition):
                self.run(self.repo.retry(task_id, actor="api:prop"))
            return
        task = self.run(self.repo.retry(task_id, actor="api:prop"))
        blocked = any(s is not S.SUCCEEDED for s in upstream)
        assert (task.status, task.attempt) == (S.BLOCKED if blocked else S.QUEUED, 0)
        m.status, m.due = (S.BLOCKED, False) if blocked else (S.QUEUED, True)
        m.attempt, m.cancel_requested, m.upstream, m.delayed = 0, False, False, False
        self._rearm(task_id)

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
        for task_id, status in expected.items():
            if status is not S.SCHEDULED:
                self._ended(task_id)
        assert recovered == expected

    @rule(task_id=consumes(tasks))
    def forget(self, task_id: uuid.UUID) -> None:
        """Stop touching a task (keeps the bundle small); it is still checked by the invariant."""

    # -- what must always hold ----------------------------------------------------------------------

    @invariant()
    def database_matches_the_model(self) -> None:
        rows = self.run(
            self.pool.fetch(
                """SELECT id, status, attempt, cancel_requested, finished_at, error->>'type' AS error_type,
                          waiting_on, admitted FROM tasks"""
            )
        )
        assert len(rows) == len(self.model)
        for row in rows:
            m = self.model[row["id"]]
            status = TaskStatus(row["status"])
            assert (status, row["attempt"], row["cancel_requested"]) == (m.status, m.attempt, m.cancel_requested)
            assert (row["finished_at"] is not None) is status.terminal
            if status is S.CANCELLED:
                assert (row["error_type"] == "UpstreamFailed") is m.upstream, (row, m)
            if status is S.BLOCKED:  # never claimable, and counting exactly the parents not succeeded
                assert not row["admitted"]
                assert row["waiting_on"] == sum(self.model[p].status is not S.SUCCEEDED for p in m.parents)
            before = self.seen.get(row["id"])
            assert before is None or before is status or status in TRANSITIONS[before], (before, status)
            self.seen[row["id"]] = status
        self.history_is_the_path_of_each_task({r["id"]: TaskStatus(r["status"]) for r in rows})

    def history_is_the_path_of_each_task(self, current: dict[uuid.UUID, TaskStatus]) -> None:
        rows = self.run(
            self.pool.fetch("SELECT task_id, from_status, to_status, actor FROM task_history ORDER BY task_id, at")
        )
        paths: dict[uuid.UUID, list[asyncpg.Record]] = {}
        for row in rows:
            paths.setdefault(row["task_id"], []).append(row)
        assert set(paths) == set(current)
        for task_id, path in paths.items():
            assert path[0]["from_status"] is None
            for before, after in itertools.pairwise(path):
                assert after["from_status"] == before["to_status"], path
                assert S(after["to_status"]) in TRANSITIONS[S(before["to_status"])], path
                assert after["actor"], path  # every transition names who made it
            assert S(path[-1]["to_status"]) is current[task_id], path
            known = self.history_seen.get(task_id, 0)
            assert len(path) >= known  # entries are only ever added
            self.history_seen[task_id] = len(path)


def test_task_state_machine_against_postgresql(machine_database: str) -> None:
    TaskLifecycle.database_url = machine_database
    run_state_machine_as_test(
        TaskLifecycle,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
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
            assert targets <= {S.QUEUED, S.BLOCKED}, source
    assert TRANSITIONS[S.SUCCEEDED] == frozenset()
