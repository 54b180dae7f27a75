"""Dependencies in PostgreSQL: blocked until the parents succeed, unblocked exactly once even when
two parents finish at once on two connections, cancelled downstream of a failure, re-armed by a retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest

from taskcore.domain import TaskStatus
from taskcore.errors import InvalidTransition, TaskValidationError
from taskcore.store import TaskRepository
from taskcore.store.repository import Success
from taskcore.store.workflows import NewStep, WorkflowRepository
from tests.integration.conftest import new_task, stored

S = TaskStatus


@pytest.fixture
async def workflows(pool: asyncpg.Pool) -> AsyncIterator[WorkflowRepository]:
    yield WorkflowRepository(pool)
    await pool.execute("TRUNCATE workflows, task_dependencies")


async def diamond(workflows: WorkflowRepository) -> dict[str, UUID]:
    steps = [
        NewStep(new_task(), "a", ()),
        NewStep(new_task(), "b", ("a",)),
        NewStep(new_task(), "c", ("a",)),
        NewStep(new_task(), "d", ("b", "c")),
    ]
    stored_steps = await workflows.insert_workflow(uuid4(), "diamond", steps)
    return {s.ref: s.id for s in stored_steps}


async def status(repo: TaskRepository, task_id: UUID) -> TaskStatus:
    return (await repo.get(task_id)).status


async def run(repo: TaskRepository, task_id: UUID, *, worker: str = "w") -> int:
    claimed = await repo.claim(task_id, worker_id=worker, lease_seconds=60)
    assert claimed is not None, f"{task_id} not claimable"
    return claimed.attempt


async def test_a_workflow_is_stored_blocked_below_its_roots(
    repo: TaskRepository, workflows: WorkflowRepository
) -> None:
    ids = await diamond(workflows)
    assert [await status(repo, ids[r]) for r in "abcd"] == [S.QUEUED, S.BLOCKED, S.BLOCKED, S.BLOCKED]
    d = await repo.get(ids["d"])
    assert d.ref == "d"
    assert set(d.depends_on) == {ids["b"], ids["c"]}
    assert not d.admitted
    assert await repo.claim(ids["b"], worker_id="w", lease_seconds=60) is None  # blocked: never claimable


async def test_two_parents_finishing_at_once_unblock_their_child_exactly_once(
    repo: TaskRepository, workflows: WorkflowRepository
) -> None:
    for _ in range(5):  # the race is between two connections; repeat it
        ids = await diamond(workflows)
        a = await run(repo, ids["a"])
        done = await repo.succeed_many([Success(ids["a"], a, '"a"')])
        assert {c.id for c in done.unblocked} == {ids["b"], ids["c"]}
        attempts = [await run(repo, ids["b"], worker="w1"), await run(repo, ids["c"], worker="w2")]
        first, second = await asyncio.gather(
            repo.succeed_many([Success(ids["b"], attempts[0], '"b"')]),
            repo.succeed_many([Success(ids["c"], attempts[1], '"c"')]),
        )
        unblocked = [c.id for c in first.unblocked + second.unblocked]
        assert unblocked == [ids["d"]], unblocked  # once, by whichever committed second
        child = await repo.get(ids["d"])
        assert child.status is S.QUEUED
        assert child.admitted
        parents = await workflows.parent_results(child.depends_on)
        assert parents == {"b": "b", "c": "c"}


async def test_parents_in_one_grouped_success_unblock_their_child_once(
    repo: TaskRepository, workflows: WorkflowRepository
) -> None:
    ids = await diamond(workflows)
    await repo.succeed_many([Success(ids["a"], await run(repo, ids["a"]), "1")])
    b, c = await run(repo, ids["b"]), await run(repo, ids["c"])
    done = await repo.succeed_many([Success(ids["b"], b, "2"), Success(ids["c"], c, "3")])
    assert [u.id for u in done.unblocked] == [ids["d"]]
    assert await status(repo, ids["d"]) is S.QUEUED


async def test_a_failure_cancels_every_blocked_descendant_naming_it(
    repo: TaskRepository, workflows: WorkflowRepository
) -> None:
    ids = await diamond(workflows)
    attempt = await run(repo, ids["a"])
    assert await repo.mark_failed(ids["a"], attempt, {"type": "Boom", "message": "no"})
    for ref in "bcd":
        task = await repo.get(ids[ref])
        assert task.status is S.CANCELLED
        assert task.finished_at is not None
        assert task.error is not None
        assert task.error["type"] == "UpstreamFailed"
        assert task.error["upstream_task_id"] == str(ids["a"])
        assert task.error["upstream_ref"] == "a"
        assert "failed" in task.error["message"]


async def test_a_cancel_and_a_lease_lost_for_good_cascade_too(
    repo: TaskRepository, workflows: WorkflowRepository
) -> None:
    ids = await diamond(workflows)
    await repo.cancel(ids["a"])  # queued: cancelled at once
    assert [await status(repo, ids[r]) for r in "bcd"] == [S.CANCELLED] * 3

    ids = await diamond(workflows)
    await repo.pool.execute("UPDATE tasks SET max_retries = 0 WHERE id = $1", ids["a"])
    await repo.claim(ids["a"], worker_id="w", lease_seconds=0.001)
    await asyncio.sleep(0.01)
    recovered = await repo.recover_expired(limit=10, error={"type": "LeaseExpired", "message": "gone"})
    assert [(r.id, r.status) for r in recovered] == [(ids["a"], S.FAILED)]
    assert [await status(repo, ids[r]) for r in "bcd"] == [S.CANCELLED] * 3


async def test_retrying_the_failed_parent_re_arms_its_descendants(
    repo: TaskRepository, workflows: WorkflowRepository
) -> None:
    ids = await diamond(workflows)
    assert await repo.mark_failed(ids["a"], await run(repo, ids["a"]), {"type": "Boom", "message": "no"})
    with pytest.raises(InvalidTransition, match="upstream"):
        await repo.retry(ids["d"])  # its upstream failed: retry that one
    retried = await repo.retry(ids["a"])
    assert retried.status is S.QUEUED
    rows = {r["id"]: r for r in await repo.pool.fetch("SELECT id, status, waiting_on, error FROM tasks")}
    assert [(rows[ids[r]]["status"], rows[ids[r]]["waiting_on"]) for r in "bcd"] == [
        ("blocked", 1),
        ("blocked", 1),
        ("blocked", 2),
    ]
    assert all(rows[ids[r]]["error"] is None for r in "bcd")
    # and the re-armed graph runs to the end
    for wave in (["a"], ["b", "c"], ["d"]):
        attempts = [await run(repo, ids[r]) for r in wave]
        await repo.succeed_many([Success(ids[r], n, "0") for r, n in zip(wave, attempts, strict=True)])
    assert [await status(repo, ids[r]) for r in "abcd"] == [S.SUCCEEDED] * 4


async def test_a_descendant_with_another_failed_parent_stays_cancelled(
    repo: TaskRepository, workflows: WorkflowRepository
) -> None:
    ids = await diamond(workflows)
    await repo.succeed_many([Success(ids["a"], await run(repo, ids["a"]), "0")])
    assert await repo.mark_failed(ids["b"], await run(repo, ids["b"]), {"type": "Boom", "message": "b"})
    assert await repo.mark_failed(ids["c"], await run(repo, ids["c"]), {"type": "Boom", "message": "c"})
    await repo.retry(ids["b"])
    d = await repo.get(ids["d"])
    assert d.status is S.CANCELLED
    assert d.error is not None
    assert d.error["upstream_task_id"] == str(ids["c"])  # c is still failed


async def test_depends_on_task_ids(repo: TaskRepository, workflows: WorkflowRepository) -> None:
    parent = await stored(repo)
    done = await stored(repo)
    await repo.succeed_many([Success(done.id, await run(repo, done.id), '{"n": 1}')])
    child = await workflows.insert_dependent(new_task(), [parent.id, done.id])
    assert child is not None
    assert child.status is S.BLOCKED
    finished = await repo.succeed_many([Success(parent.id, await run(repo, parent.id), '{"n": 2}')])
    assert [u.id for u in finished.unblocked] == [child.id]
    assert await workflows.parent_results(child.depends_on) == {str(parent.id): {"n": 2}, str(done.id): {"n": 1}}

    failed = await stored(repo, max_retries=0)
    assert await repo.mark_failed(failed.id, await run(repo, failed.id), {"type": "Boom", "message": "x"})
    orphan = await workflows.insert_dependent(new_task(), [failed.id])
    assert orphan is not None
    assert orphan.status is S.CANCELLED
    assert orphan.error is not None
    assert orphan.error["type"] == "UpstreamFailed"

    with pytest.raises(TaskValidationError) as unknown:
        await workflows.insert_dependent(new_task(), [parent.id, uuid4()])
    assert [e["field"] for e in unknown.value.errors] == ["depends_on.1"]


async def test_a_dependent_submit_racing_its_parents_success_is_never_stranded(
    repo: TaskRepository, workflows: WorkflowRepository
) -> None:
    """The child locks its parent; the success waits, and its unblock statement sees the new edge."""
    for _ in range(10):
        parent = await stored(repo)
        attempt = await run(repo, parent.id)
        child_new = new_task()
        child, done = await asyncio.gather(
            workflows.insert_dependent(child_new, [parent.id]),
            repo.succeed_many([Success(parent.id, attempt, "0")]),
        )
        assert child is not None
        after = await repo.get(child.id)
        assert after.status is S.QUEUED, (child.status, done.unblocked)


async def test_retention_purges_edges_and_then_the_empty_workflow(
    repo: TaskRepository, workflows: WorkflowRepository
) -> None:
    ids = await diamond(workflows)
    await repo.cancel(ids["a"])  # a and, with it, b, c and d end
    await repo.pool.execute("UPDATE tasks SET finished_at = now() - interval '30 days'")
    await repo.pool.execute("UPDATE workflows SET created_at = now() - interval '30 days'")
    assert await repo.purge_finished(older_than=timedelta(days=7), limit=100) == 4
    assert await repo.pool.fetchval("SELECT count(*) FROM task_dependencies") == 0
    await repo.purge_finished(older_than=timedelta(days=7), limit=100)  # the next round takes the workflow
    assert await repo.pool.fetchval("SELECT count(*) FROM workflows") == 0
