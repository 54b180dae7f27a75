"""Shared fixtures: a PostgreSQL database and a Redis queue of this test session's own.

The tests use the PostgreSQL and Redis already running on the machine (override with
TASKFLOW_TEST_ADMIN_DATABASE_URL / TASKFLOW_TEST_REDIS_URL), never mocks. Each session
creates a uniquely named database and queue, and removes them, and the arq keys of its
tasks, when it ends.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from arq.connections import ArqRedis

from taskcore.queue import TaskQueue, connect
from taskcore.registry import TaskRegistry, load_registry
from taskcore.service import TaskService
from taskcore.settings import Settings
from taskcore.store import TaskRepository, create_pool, migrate

ADMIN_DATABASE_URL = os.environ.get("TASKFLOW_TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TASKFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
# One API key per test session holding every scope: auth is on in the suite, as in production.
TEST_API_KEY = "tf_test_" + secrets.token_urlsafe(32)
TEST_API_KEYS = [
    {
        "name": "test-suite",
        "sha256": hashlib.sha256(TEST_API_KEY.encode()).hexdigest(),
        "scopes": ["tasks:read", "tasks:write", "admin"],
    }
]
AUTH_HEADERS = {"Authorization": f"Bearer {TEST_API_KEY}"}


def database_url(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_DATABASE_URL)._replace(path=f"/{name}"))


async def create_database(name: str) -> str:
    url = database_url(name)
    await migrate(url, create_database=True)
    return url


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def purge_queue(redis: ArqRedis, queue_name: str, task_ids: Iterable[uuid.UUID]) -> None:
    """Delete this queue and the arq keys of the given tasks (and nothing else)."""
    await TaskQueue(redis).purge(list(task_ids), base=queue_name)


async def all_task_ids(pool: asyncpg.Pool) -> list[uuid.UUID]:
    return [r["id"] for r in await pool.fetch("SELECT id FROM tasks")]


def make_settings(database: str, queue_name: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "database_url": database,
        "redis_url": REDIS_URL,
        "queue_name": queue_name,
        "retry_backoff_base_seconds": 0.05,
        "retry_backoff_max_seconds": 0.5,
        "lease_seconds": 3,
        "reconcile_interval_seconds": 0.5,
        "enqueue_grace_seconds": 0,
        "worker_poll_delay_seconds": 0.02,
        "worker_shutdown_grace_seconds": 5,
        "outage_tolerance_seconds": 5,
        "api_keys": TEST_API_KEYS,
        "webhook_secret": "test-webhook-secret",
        "webhook_allow_private": True,  # the receivers of the tests listen on 127.0.0.1
        "worker_metrics_port": 0,  # in-process workers: no endpoint (tests scrape a free port when they need one)
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def session_tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
async def database(session_tag: str) -> AsyncIterator[str]:
    name = f"taskflow_test_{session_tag}"
    url = await create_database(name)
    yield url
    await drop_database(name)


@pytest.fixture(scope="session")
def settings(database: str, session_tag: str) -> Settings:
    return make_settings(database, f"taskflow-test:{session_tag}")


@pytest.fixture(scope="session")
def registry() -> TaskRegistry:
    return load_registry(["tests.task_types"])


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    client = connect(settings.redis_url, queue_name=settings.queue_name)
    yield client
    await client.aclose(close_connection_pool=True)


@pytest.fixture(scope="session")
def repo(pool: asyncpg.Pool) -> TaskRepository:
    return TaskRepository(pool)


@pytest.fixture(scope="session")
def queue(redis: ArqRedis, settings: Settings) -> TaskQueue:
    return TaskQueue(redis)


@pytest.fixture(scope="session")
def service(repo: TaskRepository, queue: TaskQueue, registry: TaskRegistry, settings: Settings) -> TaskService:
    return TaskService(repo=repo, queue=queue, registry=registry, settings=settings)


@pytest.fixture
async def clean(pool: asyncpg.Pool, redis: ArqRedis, settings: Settings) -> AsyncIterator[None]:
    """Each test starts and ends with no tasks, no workers and an empty queue."""
    yield
    await purge_queue(redis, settings.queue_name, await all_task_ids(pool))
    await pool.execute(
        "TRUNCATE tasks, workers, workflows, task_dependencies, task_history, deliveries, delivery_attempts"
    )
