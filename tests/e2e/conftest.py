"""The real system: `taskflow-api` (uvicorn) and `taskflow-worker` (arq) as subprocesses,
over a database and queue of their own, driven over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from taskcore.queue import connect
from taskcore.store import create_pool
from tests.conftest import REDIS_URL, all_task_ids, create_database, drop_database, purge_queue

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """A running API and its workers; ``env`` is what they were started with."""

    url: str
    env: dict[str, str]
    logs: Path
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, **extra_env: str) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        proc = self._spawn([str(BIN / "taskflow-worker")], f"worker-{index}", {**self.env, **extra_env})
        self.workers.append(proc)
        return proc

    def _spawn(self, argv: list[str], name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def start_api(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        self.api = self._spawn([str(BIN / "taskflow-api"), "--port", port], "api", self.env)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"taskflow-api exited with {self.api.returncode}: {self.log('api')}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"taskflow-api did not answer within {STARTUP_SECONDS}s: {self.log('api')}")

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="package")
async def stack_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, str]]:
    """A database and queue of the e2e tests' own, removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    name = f"taskflow_e2e_{tag}"
    database = await create_database(name)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKFLOW_")},
        "TASKFLOW_ENV": "test",
        "TASKFLOW_DATABASE_URL": database,
        "TASKFLOW_REDIS_URL": REDIS_URL,
        "TASKFLOW_QUEUE_NAME": f"taskflow-e2e:{tag}",
        "TASKFLOW_TASK_MODULES": "greetings",
        "PYTHONPATH": str(ROOT / "examples"),
        "TASKFLOW_LOG_FORMAT": "json",
        "TASKFLOW_RETRY_BACKOFF_BASE_SECONDS": "0.2",
        "TASKFLOW_RETRY_BACKOFF_MAX_SECONDS": "2",
        "TASKFLOW_LEASE_SECONDS": "3",
        "TASKFLOW_RECONCILE_INTERVAL_SECONDS": "0.5",
        "TASKFLOW_WORKER_POLL_DELAY_SECONDS": "0.02",
        "TASKFLOW_WORKER_SHUTDOWN_GRACE_SECONDS": "10",
    }
    yield env
    pool = await create_pool(database)
    redis = connect(REDIS_URL, queue_name=env["TASKFLOW_QUEUE_NAME"])
    try:
        await purge_queue(redis, env["TASKFLOW_QUEUE_NAME"], await all_task_ids(pool))
    finally:
        await redis.aclose(close_connection_pool=True)
        await pool.close()
        await drop_database(name)


@pytest.fixture(scope="package")
def stack(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API + one worker, shared by the e2e tests of this package."""
    live = Stack(url=f"http://127.0.0.1:{free_port()}", env=stack_env, logs=tmp_path_factory.mktemp("stack-logs"))
    try:
        live.start_api()
        live.start_worker()
        yield live
    finally:
        live.stop()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        yield client
