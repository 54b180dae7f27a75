"""docker-compose.yml brought up by a real Compose (podman-compose, from PyPI), over the host's PostgreSQL and Redis
(docker-compose.host-services.yml: the official postgres/redis images cannot be pulled here): the README's quick
start through the published API port, three workers, one of them killed while it runs a task, and that task
finishing anyway (its lease expires, the reconciler hands it to another worker)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from images import podman
from loadtest.procs import free_port
from platform_tools import ToolError, ensure_compose
from taskcore.queue import connect
from taskcore.store import create_pool
from tests.conftest import ADMIN_DATABASE_URL, REDIS_URL, all_task_ids, database_url, drop_database, purge_queue
from tests.containers.conftest import ROOT, Engine, Images, report

CURL = shutil.which("curl") or "curl"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.host-services.yml")
# slirp4netns: inside each app container the host's loopback is 10.0.2.2.
HOST_FROM_CONTAINER = "10.0.2.2"
LEASE_SECONDS = 3
STARTUP_SECONDS = 90
SLEEP_SECONDS = 8.0


def _from_container(url: str) -> str:
    parts = urlsplit(url)
    assert parts.hostname in {"127.0.0.1", "localhost"}, f"{url}: the test services must be on this machine"
    netloc = parts.netloc.replace(parts.hostname, HOST_FROM_CONTAINER, 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Compose:
    def __init__(self, exe: Path, project: str, env: dict[str, str]) -> None:
        runtime = podman()[1:]  # e.g. --runtime runc on a host whose cgroups crun refuses
        self.argv = [str(exe), "--in-pod", "false", "-p", project]
        if runtime:
            self.argv.append("--podman-args=" + " ".join(runtime))
        for name in COMPOSE_FILES:
            self.argv += ["-f", str(ROOT / name)]
        self.project, self.env = project, env

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.argv, *args], capture_output=True, text=True, timeout=timeout, env=self.env, cwd=ROOT, check=False
        )
        assert proc.returncode == 0, f"podman-compose {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        return proc


def _containers(engine: Engine, project: str, service: str | None = None) -> list[dict[str, str]]:
    filters = ["--filter", f"label=io.podman.compose.project={project}"]
    if service:
        filters += ["--filter", f"label=com.docker.compose.service={service}"]
    out = engine("ps", "--all", *filters, "--format", "json").stdout
    return [{"id": c["Id"], "name": c["Names"][0], "state": c["State"]} for c in json.loads(out or "[]")]


def _curl(*args: str) -> dict[str, object]:
    """The quick start's own client (README): curl, not the test's HTTP library."""
    proc = subprocess.run([CURL, "--silent", "--show-error", "--fail", *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"curl {' '.join(args)}: {proc.stderr}"
    body: dict[str, object] = json.loads(proc.stdout)
    return body


def _wait(check: object, what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except AssertionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def compose_exe(images: Images) -> Path:
    try:
        exe: Path = ensure_compose()
    except ToolError as exc:
        pytest.fail(f"podman-compose could not be installed: {exc}", pytrace=False)
    return exe


@pytest.fixture
def stack(compose_exe: Path, engine: Engine) -> Iterator[tuple[Compose, str, str]]:
    """The Compose project, its API's base URL and its database's name; everything removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    database, queue, port = f"taskflow_compose_{tag}", f"taskflow-compose:{tag}", free_port()
    env = {
        **os.environ,
        "TASKFLOW_COMPOSE_DATABASE_URL": _from_container(database_url(database)),
        "TASKFLOW_COMPOSE_REDIS_URL": _from_container(REDIS_URL),
        "TASKFLOW_COMPOSE_QUEUE_NAME": queue,
        "TASKFLOW_COMPOSE_LEASE_SECONDS": str(LEASE_SECONDS),
        "TASKFLOW_API_PUBLISHED_PORT": str(port),
    }
    compose = Compose(compose_exe, f"taskflow-test-{tag}", env)
    try:
        yield compose, f"http://127.0.0.1:{port}", database
    finally:
        subprocess.run([*compose.argv, "down", "--timeout", "5"], capture_output=True, env=env, cwd=ROOT, check=False)
        # podman-compose's `down` knows only the replicas the files declare, not the scaled ones; and podman refuses
        # to remove a container others require (the migrations) before them, hence a few passes.
        for _ in range(3):
            for container in _containers(engine, compose.project):
                engine("rm", "--force", "--time", "0", container["id"], check=False)
        leftover = _containers(engine, compose.project)
        assert not leftover, f"containers left behind: {leftover}"
        asyncio.run(_cleanup(database, queue))


async def _cleanup(database: str, queue: str) -> None:
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
    finally:
        await admin.close()
    if not exists:
        return
    pool = await create_pool(database_url(database))
    redis = connect(REDIS_URL, queue_name=queue)
    try:
        await purge_queue(redis, queue, await all_task_ids(pool))
    finally:
        await redis.aclose(close_connection_pool=True)
        await pool.close()
        await drop_database(database)


async def _holder(database: str, task_id: str) -> str | None:
    conn = await asyncpg.connect(database_url(database))
    try:
        worker_id: str | None = await conn.fetchval("SELECT worker_id FROM tasks WHERE id = $1::uuid", task_id)
        return worker_id
    finally:
        await conn.close()


def test_compose_quick_start_scale_and_a_killed_worker(
    stack: tuple[Compose, str, str], engine: Engine, images: Images
) -> None:
    compose, api, database = stack
    started = time.monotonic()
    compose("up", "--detach", "--no-build")  # the images are this session's builds (tests/containers/conftest.py)
    _wait(lambda: _curl(f"{api}/health")["status"] == "ok", "the API answers /health", STARTUP_SECONDS)
    # podman starts a container's dependencies with it (--requires): the migrations may run once per dependent,
    # which they allow (each run applies what is missing, here nothing). Each run ends with success.
    (migrate,) = _containers(engine, compose.project, "migrate")
    _wait(lambda: engine.inspect(migrate["id"])["State"]["Status"] == "exited", "the migrations finish", 60)
    assert engine.inspect(migrate["id"])["State"]["ExitCode"] == 0, engine.logs(migrate["id"])
    assert "database up to date" in engine.logs(migrate["id"])

    # The quick start, as README gives it.
    task = _curl("-X", "POST", f"{api}/api/v1/tasks", "-H", "Content-Type: application/json",
                 "-d", '{"task_type": "test", "payload": {"message": "Hello"}}')  # fmt: skip
    _wait(lambda: _curl(f"{api}/api/v1/tasks/{task['id']}")["status"] == "succeeded", "the quick-start task", 30)
    report(f"compose up to the quick start's task succeeded: {time.monotonic() - started:.1f} s")

    compose("up", "--detach", "--no-build", "--scale", "worker=3")
    workers = _containers(engine, compose.project, "worker")
    assert len(workers) == 3, workers
    _wait(lambda: _curl(f"{api}/api/v1/queue")["workers"] == 3, "three workers seen", STARTUP_SECONDS)
    for container in [*workers, *_containers(engine, compose.project, "api")]:  # Compose's healthchecks, run now
        check = engine("healthcheck", "run", container["id"], check=False)
        assert check.returncode == 0, f"{container['name']} unhealthy: {check.stdout}{check.stderr}"

    sleeping = _curl("-X", "POST", f"{api}/api/v1/tasks", "-H", "Content-Type: application/json",
                     "-d", json.dumps({"task_type": "sleep", "payload": {"seconds": SLEEP_SECONDS}}))  # fmt: skip
    _wait(lambda: _curl(f"{api}/api/v1/tasks/{sleeping['id']}")["status"] == "running", "the sleep task runs", 30)
    holder = asyncio.run(_holder(database, str(sleeping["id"])))
    assert holder, "a running task names its worker"
    # A container's hostname is its short id; the worker id starts with the hostname.
    victim = next(c for c in workers if holder.startswith(c["id"][:12]))
    killed_at = time.monotonic()
    engine("kill", "--signal", "KILL", victim["id"])
    _wait(
        lambda: _curl(f"{api}/api/v1/tasks/{sleeping['id']}")["status"] == "succeeded",
        f"the task held by the killed {victim['name']} finishes",
        LEASE_SECONDS + SLEEP_SECONDS + 40,
    )
    done = _curl(f"{api}/api/v1/tasks/{sleeping['id']}")
    assert done["attempt"] == 2, done  # the first attempt died with its worker
    final_holder = asyncio.run(_holder(database, str(sleeping["id"])))
    assert final_holder != holder, "another worker (or the killed one's restart) ran it"
    report(f"task of the killed worker succeeded {time.monotonic() - killed_at:.1f} s after the kill")
