"""The reconciler has one leader at a time (a PostgreSQL advisory lock held for each pass), and
leadership moves on when the leader dies: its connection goes, the lock goes with it.
(That a non-leader's pass does nothing is tests/integration/test_worker.py::test_only_the_leader_reconciles.)"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from asyncpg.exceptions._base import InternalClientError

from taskcore.errors import DependencyUnavailable
from taskcore.queue import TaskQueue
from taskcore.settings import Settings
from taskcore.store import TaskRepository, create_pool
from taskflow_worker.reconciler import LEADER_LOCK_KEY, Reconciler
from tests.e2e._helpers import wait_until

HOLDER = """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = $1
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"""


async def lead_until(repo: TaskRepository, leading: asyncio.Event, release: asyncio.Event) -> None:
    """Hold the reconciler's leadership (as a pass in progress does) until ``release``."""
    async with repo.leadership(LEADER_LOCK_KEY) as held:
        assert held
        leading.set()
        await release.wait()


async def test_one_leader_at_a_time_and_leadership_moves_when_the_leader_dies(
    settings: Settings, queue: TaskQueue, pool: asyncpg.Pool
) -> None:
    pools = [await create_pool(settings.database_url, max_size=3) for _ in range(3)]
    leader_repo = TaskRepository(pools[0])
    followers = [Reconciler(repo=TaskRepository(p), queue=queue, settings=settings) for p in pools[1:]]
    leading, release = asyncio.Event(), asyncio.Event()
    leader = asyncio.create_task(lead_until(leader_repo, leading, release))
    try:
        await asyncio.wait_for(leading.wait(), 10)
        holders = await pool.fetch(HOLDER, LEADER_LOCK_KEY)
        assert len(holders) == 1
        reports = [await f.tick() for f in followers for _ in range(5)]
        assert not any(r.leader for r in reports)  # ten passes from two other workers: none leads

        await pool.execute("SELECT pg_terminate_backend($1)", holders[0]["pid"])  # the leader dies

        async def gone() -> bool:
            return not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", holders[0]["pid"])

        await wait_until(gone, within=10, what="the leader's backend is gone")
        await asyncio.sleep(0.2)  # let the client read the termination notice
        release.set()
        # its connection is gone (asyncpg reports a connection killed mid-transaction one of two ways)
        with pytest.raises((DependencyUnavailable, InternalClientError)):
            await leader
        assert (await followers[0].tick()).leader  # the next pass elsewhere leads
        assert len(await pool.fetch(HOLDER, LEADER_LOCK_KEY)) == 0  # and lets go when it is done
    finally:
        release.set()
        await asyncio.gather(leader, return_exceptions=True)
        for p in pools:
            await p.close()
