"""Processes and resources of a harness run: a database and queue of its own, the real
`taskflow-api` and `taskflow-worker` processes bound to 127.0.0.1, all removed afterwards.

Public: the harnesses in loadtest/ and the process-starting tests (tests/e2e, tests/reliability) share
`free_port` and `stop`, so a process is started and reaped one way everywhere."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from arq.connections import ArqRedis

from taskcore.queue import TaskQueue, connect
from taskcore.store import migrate

BIN = Path(sys.executable).parent
ADMIN_DATABASE_URL = os.environ.get(
    "TASKFLOW_BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TASKFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
STARTUP_SECONDS = 60
STOP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = STOP_SECONDS) -> None:
    """Signal one process we started and reap it (SIGKILL if it does not exit in time)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Resources:
    """A database, a queue name and the environment that points the processes at them."""

    name: str
    database_url: str
    queue_name: str
    env: dict[str, str]
    logs: Path

    def spawn(self, argv: list[str], log_name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{log_name}.log").open("ab") as log:
            return subprocess.Popen(argv, env={**self.env, **extra_env}, stdout=log, stderr=subprocess.STDOUT)

    def log_tail(self, log_name: str) -> str:
        path = self.logs / f"{log_name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@dataclass
class System:
    """The API and the workers of a harness run."""

    resources: Resources
    url: str = ""
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_api(self, **extra_env: str) -> str:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api = self.resources.spawn(
            [str(BIN / "taskflow-api"), "--host", "127.0.0.1", "--port", str(port)], "api", **extra_env
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"the API exited: {self.resources.log_tail('api')}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self.url
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the API did not get ready: {self.resources.log_tail('api')}")

    def start_worker(self, **extra_env: str) -> subprocess.Popen[bytes]:
        proc = self.resources.spawn([str(BIN / "taskflow-worker")], f"worker-{len(self.workers)}", **extra_env)
        self.workers.append(proc)
        return proc

    def stop_all(self) -> None:
        procs = [*self.workers, *([self.api] if self.api else [])]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            stop(proc)


def _database_url(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_DATABASE_URL)._replace(path=f"/{name}"))


async def purge(redis: ArqRedis, queue_name: str, job_ids: list[str]) -> None:
    """Delete the queue and the arq keys of these jobs (and nothing else)."""
    await TaskQueue(redis).purge([uuid.UUID(j) for j in job_ids], base=queue_name)


@asynccontextmanager
async def provisioned(prefix: str, logs: Path, **settings: str) -> AsyncIterator[Resources]:
    """A fresh database (migrated) and queue; dropped with their Redis keys afterwards."""
    tag = uuid.uuid4().hex[:8]
    name = f"{prefix}_{tag}"
    database_url = _database_url(name)
    await migrate(database_url, create_database=True)
    queue_name = f"{prefix}:{tag}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKFLOW_")},
        "TASKFLOW_ENV": "test",
        "TASKFLOW_DATABASE_URL": database_url,
        "TASKFLOW_REDIS_URL": REDIS_URL,
        "TASKFLOW_QUEUE_NAME": queue_name,
        "TASKFLOW_LOG_FORMAT": "json",
        "TASKFLOW_API_HOST": "127.0.0.1",
        "TASKFLOW_WORKER_METRICS_HOST": "127.0.0.1",
        "TASKFLOW_WORKER_METRICS_PORT": "0",
        **{f"TASKFLOW_{k.upper()}": v for k, v in settings.items()},
    }
    logs.mkdir(parents=True, exist_ok=True)
    try:
        yield Resources(name, database_url, queue_name, env, logs)
    finally:
        redis = connect(REDIS_URL, queue_name=queue_name)
        try:
            conn = await asyncpg.connect(database_url)
            try:
                ids = [str(r["id"]) for r in await conn.fetch("SELECT id FROM tasks")]
            finally:
                await conn.close()
            await purge(redis, queue_name, ids)
        finally:
            await redis.aclose(close_connection_pool=True)
            admin = await asyncpg.connect(ADMIN_DATABASE_URL)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
