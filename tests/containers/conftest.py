"""The container tests: TaskFlow's images built by a real engine (podman, scripts/images.py) and run.

The engine and the base image are installed / made on first use (scripts/ensure-podman.sh,
scripts/local-base-image.sh). These tests skip, saying why, only when no engine can be installed or started
here; an image that does not build fails them. Every container runs with the host's network (no bridge, no
iptables rule) and is removed afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from images import RUN_FLAGS, Built, EngineUnavailable, build_all, ensure_engine  # noqa: E402

TAG = "dev"  # what docker-compose.yml names (taskflow-api:dev, taskflow-worker:dev)
# Lines the tests want seen in every run's output (image sizes, timings), not only with -s.
REPORT: list[str] = []


def report(line: str) -> None:
    print(line)
    REPORT.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("containers: image sizes and timings")
        for line in REPORT:
            terminalreporter.write_line(line)


@dataclass
class Engine:
    """podman, as this host needs it called, and the containers a test started (removed at the end)."""

    cmd: list[str]
    started: list[str] = field(default_factory=list)

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.cmd, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def run_detached(self, image: str, name: str, env: dict[str, str], *extra: str) -> str:
        envs = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
        self("run", "--detach", "--name", name, *RUN_FLAGS, *envs, *extra, image)
        self.started.append(name)
        return name

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self("container", "inspect", name).stdout)
        return data[0]

    def logs(self, name: str) -> str:
        proc = self("logs", name, check=False)
        return (proc.stdout + proc.stderr)[-4000:]

    def remove_all(self) -> None:
        for name in self.started:
            self("rm", "--force", "--time", "0", name, check=False)
        self.started.clear()


@dataclass(frozen=True)
class Images:
    api: Built
    worker: Built
    build_seconds: float


@pytest.fixture(scope="session")
def podman_cmd() -> list[str]:
    try:
        return ensure_engine()
    except EngineUnavailable as exc:
        pytest.skip(f"no container engine here: {exc}")


@pytest.fixture(scope="session")
def images(podman_cmd: list[str]) -> Images:
    """Both images, built from the repository's Dockerfiles (cached layers make a rebuild take seconds)."""
    started = time.monotonic()
    try:
        _cmd, built = build_all(TAG, quiet=True)
    except EngineUnavailable as exc:
        pytest.skip(f"no container engine here: {exc}")
    by_app = {b.app: b for b in built}
    return Images(by_app["api"], by_app["worker"], time.monotonic() - started)


@pytest.fixture
def engine(podman_cmd: list[str]) -> Iterator[Engine]:
    live = Engine(podman_cmd)
    try:
        yield live
    finally:
        live.remove_all()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
