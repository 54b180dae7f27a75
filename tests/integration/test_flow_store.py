"""Admission, limits and pauses against the real PostgreSQL (taskcore.store.flow)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from taskcore.domain import TaskStatus
from taskcore.flow import Limit
from taskcore.store import ListFilter, TaskRepository
from taskcore.store.flow import FlowRepository
from tests.integration.conftest import new_task, stored

LEASE = 30.0


@pytest.fixture
async def flow(pool: asyncpg.Pool) -> AsyncIterator[FlowRepository]:
    yield FlowRepository(pool)
    await pool.execute("TRUNCATE limits, limit_rates, pauses")
    await pool.execute("DELETE FROM queues WHERE name <> 'default'")


async def admit_all(flow: FlowRepository, *, window: int = 1000) -> list[object]:
    admitted = await flow.admit(window=window)
    assert admitted is not None
    return list(admitted)


async def test_a_task_without_keys_is_admitted_as_stored_and_one_with_keys_waits(repo: TaskRepository) -> None:
    plain = await stored(repo)
    keyed = await stored(repo, limit_keys=("tenant:1",), queue="reports")
    assert plain.admitted
    assert not keyed.admitted
    assert keyed.queue == "reports"
    assert keyed.limit_keys == ("tenant:1",)
    assert await repo.claim(keyed.id, worker_id="w", lease_seconds=LEASE) is None  # not admitted: not claimable


async def test_max_running_admits_up_to_the_limit_and_a_finish_frees_a_slot(
    repo: TaskRepository, flow: FlowRepository
) -> None:
    await flow.set_limit(Limit("stripe", max_running=2))
    tasks = [await stored(repo, limit_keys=("stripe",)) for _ in range(5)]
    first = await admit_all(flow)
    assert len(first) == 2
    assert await admit_all(flow) == []  # full: nothing more until a slot frees
    claimed = await repo.claim(first[0].id, worker_id="w", lease_seconds=LEASE)  # type: ignore[attr-defined]
    assert claimed is not None
    assert await admit_all(flow) == []  # running still holds its slot
    assert await repo.mark_succeeded(claimed.id, claimed.attempt, {"ok": True})
    again = await admit_all(flow)
    assert len(again) == 1
    usage = await flow.limit("stripe")
    assert usage.in_use == 2
    assert {t.id for t in tasks} >= {a.id for a in first + again}  # type: ignore[attr-defined]


async def test_a_full_key_does_not_hold_up_other_keys(repo: TaskRepository, flow: FlowRepository) -> None:
    await flow.set_limit(Limit("a", max_running=1))
    for _ in range(20):
        await stored(repo, limit_keys=("a",))
    b = [await stored(repo, limit_keys=("b",)) for _ in range(3)]
    admitted = {t.id for t in await admit_all(flow)}  # type: ignore[attr-defined]
    assert {t.id for t in b} <= admitted
    assert len(admitted) == 4


async def test_a_template_counts_each_key_on_its_own(repo: TaskRepository, flow: FlowRepository) -> None:
    await flow.set_limit(Limit("tenant:*", max_running=1))
    await flow.set_limit(Limit("tenant:vip", max_running=3))
    for key in ("tenant:1", "tenant:1", "tenant:2", "tenant:2", "tenant:vip", "tenant:vip", "tenant:vip"):
        await stored(repo, limit_keys=(key,))
    admitted = await admit_all(flow)
    rows = await repo.list_page(ListFilter(), limit=100)
    by_key = Counter(t.limit_keys[0] for t in rows.items if t.admitted)
    assert by_key == {"tenant:1": 1, "tenant:2": 1, "tenant:vip": 3}
    assert len(admitted) == 5
    usages = {u.limit.key: u for u in await flow.limits()}
    assert usages["tenant:*"].in_use == 2
    assert sorted(usages["tenant:*"].busiest) == [("tenant:1", 1), ("tenant:2", 1)]


async def test_fair_share_admits_the_small_key_in_the_first_round(repo: TaskRepository, flow: FlowRepository) -> None:
    for _ in range(200):
        await stored(repo, limit_keys=("tenant:big",))
    small = [await stored(repo, limit_keys=("tenant:small",)) for _ in range(3)]
    admitted = [a.id for a in await admit_all(flow, window=6)]  # type: ignore[attr-defined]
    assert len(admitted) == 6
    assert {t.id for t in small} <= set(admitted)


async def test_a_rate_gives_each_admitted_task_its_own_start(repo: TaskRepository, flow: FlowRepository) -> None:
    await flow.set_limit(Limit("api", per_second=5, burst=2))
    for _ in range(20):
        await stored(repo, limit_keys=("api",))
    admitted = sorted(await admit_all(flow), key=lambda a: a.run_at)  # type: ignore[attr-defined]
    # Two at once (the burst), then one per 0.2 s, no further ahead than the one-second horizon.
    assert 2 <= len(admitted) <= 8
    starts = [a.run_at for a in admitted]  # type: ignore[attr-defined]
    assert starts[-1] - starts[0] <= timedelta(seconds=1.01)
    for i in range(2, len(starts)):
        assert starts[i] - starts[i - 2] >= timedelta(seconds=0.199)
    assert len(await admit_all(flow)) <= 2  # tokens spent: a second round at once admits only what refilled


async def test_pause_holds_new_and_waiting_tasks_and_resume_releases_them(
    repo: TaskRepository, flow: FlowRepository
) -> None:
    before = await stored(repo, queue="mail")
    assert before.admitted
    taken = await flow.pause("queue", "mail")
    assert [t.id for t in taken] == [before.id]
    during = await stored(repo, queue="mail")
    other = await stored(repo, queue="default")
    assert not during.admitted
    assert other.admitted
    assert await admit_all(flow) == []
    assert await repo.claim(before.id, worker_id="w", lease_seconds=LEASE) is None
    [info] = await flow.queues(name="mail")
    assert info.paused
    assert info.depth[TaskStatus.QUEUED] == 2
    assert await flow.resume("queue", "mail")
    assert {a.id for a in await admit_all(flow)} == {before.id, during.id}  # type: ignore[attr-defined]
    assert await repo.claim(before.id, worker_id="w", lease_seconds=LEASE) is not None


async def test_pausing_a_task_type(repo: TaskRepository, flow: FlowRepository) -> None:
    await flow.pause("task_type", "sleep")
    held = await stored(repo, task_type="sleep", payload={"seconds": 0})
    free = await stored(repo)
    assert not held.admitted
    assert free.admitted
    await flow.resume("task_type", "sleep")
    assert [a.id for a in await admit_all(flow)] == [held.id]  # type: ignore[attr-defined]


async def test_insert_many_stores_queue_and_keys(repo: TaskRepository, flow: FlowRepository) -> None:
    news = [new_task(queue="bulk"), new_task(queue="bulk", limit_keys=("k1", "k2"))]
    stored_many = await repo.insert_many(news)
    assert [s.admitted for s in stored_many] == [True, False]
    assert [s.queue for s in stored_many] == ["bulk", "bulk"]
    keyed = await repo.get(news[1].id)
    assert keyed.limit_keys == ("k1", "k2")
    assert not keyed.admitted


async def test_a_retry_under_a_key_goes_back_through_admission(repo: TaskRepository, flow: FlowRepository) -> None:
    await flow.set_limit(Limit("k", max_running=1))
    task = await stored(repo, limit_keys=("k",))
    assert len(await admit_all(flow)) == 1
    claimed = await repo.claim(task.id, worker_id="w", lease_seconds=LEASE)
    assert claimed is not None
    due = await repo.mark_retry(task.id, claimed.attempt, {"type": "X", "message": "x"}, 0)
    assert due is not None
    assert not due.admitted
    assert (await flow.limit("k")).in_use == 0  # the retry freed the slot
    assert [a.id for a in await admit_all(flow)] == [task.id]  # type: ignore[attr-defined]


async def test_fair_share_holds_when_rounds_admit_one_task_at_a_time(
    repo: TaskRepository, flow: FlowRepository
) -> None:
    """A flood holding the queue's room yields each freed slot to a key with nothing in flight,
    even though the flood's next task was submitted first (rank alone would pick it every round)."""
    for _ in range(50):
        await stored(repo, limit_keys=("tenant:big",))
    first = await flow.admit(window=10)
    assert first is not None
    assert len(first) == 10
    small = {(await stored(repo, limit_keys=("tenant:small",))).id for _ in range(3)}
    admitted_small = []
    for started in first[:3]:
        assert await repo.claim(started.id, worker_id="w", lease_seconds=LEASE) is not None  # frees one unit of room
        [next_one] = await admit_all(flow, window=10)
        admitted_small.append(next_one.id)  # type: ignore[attr-defined]
    assert set(admitted_small) == small
