"""The reconciler's leader lock on a session of its own when the main pool goes through a pooler."""

from __future__ import annotations

import uuid

import asyncpg

from taskcore.settings import Settings
from taskcore.store import TaskRepository, open_leader_pool, open_pool
from taskcore.store._pool import LEADER_APPLICATION_NAME
from taskflow_worker.preflight import check_dependencies
from tests.conftest import database_url

HOLDER = """SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.granted"""


async def test_without_a_pooler_the_lock_uses_the_main_pool(settings: Settings) -> None:
    main = await open_pool(settings)
    try:
        assert await open_leader_pool(settings, main) is main
    finally:
        await main.close()


async def test_behind_a_pooler_the_lock_is_held_on_the_direct_session(settings: Settings, pool: asyncpg.Pool) -> None:
    # The same server under another spelling stands in for "a pooler in front": the URLs differ.
    pooled = settings.model_copy(
        update={
            "database_url": settings.database_url + "?application_name=taskflow-test-main",
            "database_direct_url": settings.database_url,
        }
    )
    assert pooled.pooled
    assert pooled.statement_cache_size == 0
    main = await open_pool(pooled)
    leader = await open_leader_pool(pooled, main)
    try:
        assert leader is not main
        repo = TaskRepository(main, leader_pool=leader)
        async with repo.leadership(991177) as held:
            assert held
            assert [r["application_name"] for r in await pool.fetch(HOLDER, 991177)] == [LEADER_APPLICATION_NAME]
            async with TaskRepository(main).leadership(991177) as other:
                assert not other  # the lock is the server's: another process's try fails
            await repo.ping()  # the pass's own queries run on the main pool meanwhile
        assert await pool.fetch(HOLDER, 991177) == []
    finally:
        await leader.close()
        await main.close()


async def test_the_worker_says_at_start_when_the_direct_url_is_wrong(settings: Settings) -> None:
    name = f"taskflow_test_missing_{uuid.uuid4().hex[:8]}"
    bad = settings.model_copy(update={"database_direct_url": database_url(name)})
    down = await check_dependencies(bad)
    assert down.keys() == {"postgresql (TASKFLOW_DATABASE_DIRECT_URL)"}, down
    assert f'database "{name}" does not exist' in next(iter(down.values()))
