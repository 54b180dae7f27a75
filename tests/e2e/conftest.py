"""The real system: `taskflow-api` (uvicorn) and `taskflow-worker` (arq) as subprocesses,
over a database and queue of their own, driven over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis

from loadtest.procs import free_port
from loadtest.procs import stop as terminate  # SIGTERM one process we started and reap it
from taskcore.queue import connect
from taskcore.store import create_pool
from tests.conftest import (
    AUTH_HEADERS,
    REDIS_URL,
    TEST_API_KEYS,
    all_task_ids,
    create_database,
    drop_database,
    purge_queue,
)

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 30
STOP_SECONDS = 15
# A port nothing listens on: a dependency that is down.
CLOSED_PORT = 1
E2E_WEBHOOK_SECRET = "e2e-webhook-secret"


def reap(proc: subprocess.Popen[bytes], *, timeout: float = STOP_SECONDS) -> None:
    """Wait for a process we started to exit (SIGKILL it if it does not in time)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Stack:
    """A running API and its workers; ``env`` is what they were started with."""

    url: str
    env: dict[str, str]
    logs: Path
    # Sent on every call to /api/v1: the session's key, holding every scope.
    headers: dict[str, str] = field(default_factory=lambda: dict(AUTH_HEADERS))
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, **extra_env: str) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        proc = self._spawn([str(BIN / "taskflow-worker")], f"worker-{index}", {**self.env, **extra_env})
        self.workers.append(proc)
        return proc

    def _spawn(self, argv: list[str], name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def _wait_healthy(self, proc: subprocess.Popen[bytes], url: str, name: str) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.log(name)}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer within {STARTUP_SECONDS}s: {self.log(name)}")

    def wait_for_workers(self, count: int = 1) -> None:
        """Block until the API reports ``count`` workers seen (their first heartbeat is in)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.workers and all(proc.poll() is not None for proc in self.workers):
                last = len(self.workers) - 1
                raise RuntimeError(f"every worker exited; worker-{last}: {self.log(f'worker-{last}')}")
            answer = httpx.get(f"{self.url}/api/v1/queue", headers=self.headers, timeout=5)
            # A 503 (PostgreSQL slow to answer on a busy machine) is asked again, within the deadline.
            if answer.status_code == 200 and answer.json()["workers"] >= count:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{count} worker(s) not seen within {STARTUP_SECONDS}s: {self.log('worker-0')}")

    def start_api(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        self.api = self._spawn([str(BIN / "taskflow-api"), "--port", port], "api", self.env)
        self._wait_healthy(self.api, self.url, "api")

    @contextmanager
    def extra_api(self, name: str, **overrides: str) -> Iterator[str]:
        """Another `taskflow-api` on a free port, with this stack's settings plus ``overrides``
        (e.g. a dependency URL pointing at a closed port); yields its base URL, stops it afterwards."""
        url = f"http://127.0.0.1:{free_port()}"
        proc = self._spawn(
            [str(BIN / "taskflow-api"), "--port", url.rsplit(":", 1)[1]], name, {**self.env, **overrides}
        )
        self.extra.append(proc)
        try:
            self._wait_healthy(proc, url, name)
            yield url
        finally:
            terminate(proc)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        procs = [*self.workers, *self.extra, *([self.api] if self.api else [])]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            reap(proc)


@asynccontextmanager
async def provision(prefix: str) -> AsyncIterator[dict[str, str]]:
    """A database and queue of their own and the environment to run the processes over them;
    removed (with the arq keys of their tasks) afterwards."""
    tag = uuid.uuid4().hex[:10]
    name = f"{prefix}_{tag}"
    database = await create_database(name)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKFLOW_")},
        "TASKFLOW_ENV": "test",
        "TASKFLOW_API_KEYS": json.dumps(TEST_API_KEYS),
        "TASKFLOW_DATABASE_URL": database,
        "TASKFLOW_REDIS_URL": REDIS_URL,
        "TASKFLOW_QUEUE_NAME": f"{prefix.replace('_', '-')}:{tag}",
        "TASKFLOW_TASK_MODULES": "greetings,e2e_tasks",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "examples"), str(E2E_DIR)]),
        "TASKFLOW_LOG_FORMAT": "json",
        "TASKFLOW_RETRY_BACKOFF_BASE_SECONDS": "0.2",
        "TASKFLOW_RETRY_BACKOFF_MAX_SECONDS": "2",
        "TASKFLOW_LEASE_SECONDS": "3",
        "TASKFLOW_RECONCILE_INTERVAL_SECONDS": "0.5",
        # The reconciler leaves a waiting task alone this long after its last change (default 10 s).
        "TASKFLOW_ENQUEUE_GRACE_SECONDS": "1",
        "TASKFLOW_WORKER_POLL_DELAY_SECONDS": "0.02",
        "TASKFLOW_WORKER_SHUTDOWN_GRACE_SECONDS": "10",
        # No worker metrics endpoint unless a test asks for one (on a free port of 127.0.0.1).
        "TASKFLOW_WORKER_METRICS_PORT": "0",
        "TASKFLOW_WORKER_METRICS_HOST": "127.0.0.1",
        # Callbacks (docs/callbacks.md): the receivers of the tests listen on 127.0.0.1.
        "TASKFLOW_WEBHOOK_SECRET": E2E_WEBHOOK_SECRET,
        "TASKFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
        "TASKFLOW_WEBHOOK_POLL_INTERVAL_SECONDS": "0.1",
    }
    try:
        yield env
    finally:
        pool = await create_pool(database)
        redis = connect(REDIS_URL, queue_name=env["TASKFLOW_QUEUE_NAME"])
        try:
            await purge_queue(redis, env["TASKFLOW_QUEUE_NAME"], await all_task_ids(pool))
        finally:
            await redis.aclose(close_connection_pool=True)
            await pool.close()
            await drop_database(name)


@pytest.fixture(scope="package")
async def stack_env() -> AsyncIterator[dict[str, str]]:
    """A database and queue of the e2e tests' own, removed afterwards."""
    async with provision("taskflow_e2e") as env:
        yield env


@pytest.fixture(scope="package")
def stack(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API + one worker, shared by the e2e tests of this package."""
    live = Stack(url=f"http://127.0.0.1:{free_port()}", env=stack_env, logs=tmp_path_factory.mktemp("stack-logs"))
    try:
        live.start_api()
        live.start_worker()
        live.wait_for_workers(1)
        yield live
    finally:
        live.stop()


@pytest.fixture
async def isolated_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """An API over a database and queue of its own and no worker (start them with ``start_worker``):
    for tests that stop workers, so the shared stack's worker cannot interfere."""
    async with provision("taskflow_e2e_iso") as env:
        live = Stack(url=f"http://127.0.0.1:{free_port()}", env=env, logs=tmp_path_factory.mktemp("iso-logs"))
        try:
            await asyncio.to_thread(live.start_api)
            yield live
        finally:
            await asyncio.to_thread(live.stop)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as client:
        yield client


@pytest.fixture(scope="package")
async def db(stack_env: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    """The e2e database, read directly to verify what the API and worker stored."""
    pool = await create_pool(stack_env["TASKFLOW_DATABASE_URL"], max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="package")
async def arq_redis(stack_env: dict[str, str]) -> AsyncIterator[ArqRedis]:
    """The Redis the stack's queue lives in."""
    client = connect(REDIS_URL, queue_name=stack_env["TASKFLOW_QUEUE_NAME"])
    yield client
    await client.aclose(close_connection_pool=True)
