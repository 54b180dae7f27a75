"""StatusListener over the real PostgreSQL: NOTIFY wakes subscribers, a lost connection is re-LISTENed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from taskcore.errors import DependencyUnavailable
from taskcore.settings import Settings
from taskcore.store import TaskRepository
from taskcore.store.notify import APPLICATION_NAME, CHANNEL, StatusListener
from tests.integration.conftest import stored
from tests.integration.test_service import CLOSED_PORT_PG


@pytest.fixture
async def listener(settings: Settings) -> AsyncIterator[StatusListener]:
    listener = StatusListener(settings.database_url, health_interval=0.5)
    await listener.start()
    assert await listener.wait_connected(10)
    yield listener
    await listener.stop()


async def test_a_status_change_wakes_its_subscribers_only(
    listener: StatusListener, repo: TaskRepository, pool: asyncpg.Pool
) -> None:
    task = await stored(repo)
    other = await stored(repo)
    async with listener.subscribe(task.id) as mine, listener.subscribe(other.id) as theirs:
        assert await pool.fetchval("SELECT count(*) FROM task_watches") == 2
        assert not await mine.wait(0.05)
        claimed = await repo.claim(task.id, worker_id="w", lease_seconds=30)
        assert claimed is not None
        assert await mine.wait(10)
        assert not await theirs.wait(0.2)
        # an update that leaves the status alone (a lease renewal) notifies nobody
        await repo.renew_leases([task.id], worker_id="w", lease_seconds=30)
        assert not await mine.wait(0.2)
        assert await repo.mark_succeeded(task.id, claimed.attempt, {"ok": True})
        assert await mine.wait(10)
    assert listener.subscriptions == 0
    assert await pool.fetchval("SELECT count(*) FROM task_watches") == 0


async def test_only_watched_tasks_notify(settings: Settings, repo: TaskRepository) -> None:
    """A NOTIFY serialises commits, so the workers' transitions of unwatched tasks must not send one."""
    heard: list[str] = []
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.add_listener(CHANNEL, lambda *args: heard.append(args[-1]))
        task = await stored(repo)
        claimed = await repo.claim(task.id, worker_id="w", lease_seconds=30)
        assert claimed is not None
        await repo.mark_succeeded(task.id, claimed.attempt, None)
        await conn.execute("SELECT 1")  # a round trip: a notification sent before it has arrived
        assert heard == []
    finally:
        await conn.close()


async def test_a_lost_connection_is_listened_again_and_wakes_everyone(
    listener: StatusListener, repo: TaskRepository, pool: asyncpg.Pool
) -> None:
    task = await stored(repo)
    async with listener.subscribe(task.id) as changes:
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            APPLICATION_NAME,
        )
        assert killed == 1
        assert await changes.wait(10), "not woken after the connection was lost"
        for _ in range(200):  # bounded: until the second connection is up
            if listener.connected and listener.connections == 2:
                break
            await asyncio.sleep(0.05)
        assert listener.connections == 2
        await changes.wait(0.01)  # drop the wake-up of the reconnection itself
        assert await repo.claim(task.id, worker_id="w", lease_seconds=30) is not None
        assert await changes.wait(10), "no notification after re-LISTEN"


async def test_subscribing_while_postgresql_is_down_is_unavailable() -> None:
    listener = StatusListener(CLOSED_PORT_PG, connect_timeout=0.5)
    await listener.start()
    try:
        assert not await listener.wait_connected(0.3)
        with pytest.raises(DependencyUnavailable):
            async with listener.subscribe(uuid.uuid4()):
                pass
    finally:
        await listener.stop()
