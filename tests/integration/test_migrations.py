"""taskflow-migrate on a database of its own: concurrent runs, reruns, edited migrations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from taskcore.store.migrate import load_migrations, main, migrate
from tests.conftest import database_url, drop_database


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    name = f"taskflow_migrate_{uuid.uuid4().hex[:10]}"
    yield database_url(name)
    await drop_database(name)


async def test_concurrent_migrators_apply_each_migration_once(fresh_database: str) -> None:
    results = await asyncio.gather(*(migrate(fresh_database) for _ in range(4)))
    applied = [m.version for result in results for m in result]
    assert sorted(applied) == [m.version for m in load_migrations()]
    conn = await asyncpg.connect(fresh_database)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [m.version for m in load_migrations()]
        assert await conn.fetchval("SELECT to_regclass('tasks') IS NOT NULL")
    finally:
        await conn.close()
    assert await migrate(fresh_database) == []


async def test_an_edited_migration_is_refused(fresh_database: str) -> None:
    await migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        await migrate(fresh_database)


def test_the_command_reports_an_unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFLOW_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert main([]) == 2
