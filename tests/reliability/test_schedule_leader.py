"""The schedule leader SIGKILLed mid-stream, with a second worker ready to lead: every slot of a
one-second schedule has exactly one task, none is lost (catch_up "all" fills the leader's gap),
and the runs keep coming from the survivor."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import wait_until
from tests.e2e.conftest import Stack
from tests.reliability._helpers import kill

pytestmark = pytest.mark.e2e

SCHEDULES = "/api/v1/schedules"


async def slot_count(db: asyncpg.Pool, schedule_id: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM tasks WHERE schedule_id = $1::uuid", schedule_id))


async def test_the_leader_killed_mid_stream_fires_no_slot_twice_and_loses_none(
    rel_stack: Stack, rel_db: asyncpg.Pool
) -> None:
    first = rel_stack.start_worker(TASKFLOW_WORKER_ID="leader-a")
    await asyncio.to_thread(rel_stack.wait_for_workers, 1)
    async with httpx.AsyncClient(base_url=rel_stack.url, headers=rel_stack.headers, timeout=10) as api:
        created = await api.post(
            SCHEDULES,
            json={
                "name": "every-second",
                "every_seconds": 1,
                "overlap": "allow",
                "catch_up": "all",
                "task": {"task_type": "test", "payload": {"n": 1}},
            },
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]

        async def fired(n: int) -> bool:
            return await slot_count(rel_db, sid) >= n

        await wait_until(lambda: fired(3), within=20, what="the first worker leads and fires three slots")
        rel_stack.start_worker(TASKFLOW_WORKER_ID="follower-b")
        await asyncio.to_thread(rel_stack.wait_for_workers, 2)
        await asyncio.sleep(1.3)  # the follower's passes find the lock taken
        before_kill = await slot_count(rel_db, sid)
        kill(first)  # mid-stream: between passes or inside one, its transaction dies with it
        await wait_until(lambda: fired(before_kill + 4), within=20, what="the survivor takes over and fires")
        assert (await api.post(f"{SCHEDULES}/{sid}/pause")).status_code == 200

    rows = await rel_db.fetch(
        "SELECT scheduled_for, count(*) AS n FROM tasks WHERE schedule_id = $1::uuid GROUP BY 1 ORDER BY 1", sid
    )
    assert all(r["n"] == 1 for r in rows), [r for r in rows if r["n"] > 1]  # no slot fired twice
    slots = [r["scheduled_for"] for r in rows]
    gaps = [(a, b) for a, b in itertools.pairwise(slots) if b - a != timedelta(seconds=1)]
    assert not gaps, gaps  # no slot lost: catch_up "all" fired what the dead leader missed
    by_worker = await rel_db.fetch(
        "SELECT DISTINCT worker_id FROM tasks WHERE schedule_id = $1::uuid AND worker_id IS NOT NULL", sid
    )
    assert by_worker  # the runs were picked up by workers

    async def all_finished() -> bool:
        left = await rel_db.fetchval(
            "SELECT count(*) FROM tasks WHERE schedule_id = $1::uuid AND status <> 'succeeded'", sid
        )
        return int(left) == 0

    await wait_until(all_finished, within=30, what="every run succeeds (the dead worker's leases recovered)")
