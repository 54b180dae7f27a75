"""TaskFlow through a real PgBouncer in transaction pooling mode (as Azure's built-in one runs).

The API and the worker reach PostgreSQL through a `pgbouncer` this module starts (its own port, ini
and userlist in a temporary directory, a deliberately small server pool) with TASKFLOW_DATABASE_URL,
and directly with TASKFLOW_DATABASE_DIRECT_URL. The core flows must work, PgBouncer's own counters
must show the pooled traffic, and no LISTEN, leader lock or migration may go through it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from loadtest.procs import free_port
from loadtest.procs import stop as terminate
from taskcore.queue import TaskQueue, connect
from taskcore.store._pool import LEADER_APPLICATION_NAME
from taskcore.store.notify import APPLICATION_NAME as LISTENER_APPLICATION_NAME
from tests.conftest import ADMIN_DATABASE_URL, REDIS_URL
from tests.e2e._helpers import TASKS, submit, wait_for_status, wait_until
from tests.e2e.conftest import Stack, provision

pytestmark = pytest.mark.e2e

# Fewer server connections than the API's and the worker's pools together (10 each): PgBouncer must multiplex.
SERVER_POOL_SIZE = 4
PSQL = shutil.which("psql") or "/usr/bin/psql"


def _binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


def ensure_pgbouncer() -> str:
    """The pgbouncer binary; installed with apt (Debian's package) when missing and we may."""
    found = _binary()
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.fail("pgbouncer is not installed (apt-get install -y pgbouncer)", pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "pgbouncer"]
    if subprocess.run(install, env=env, capture_output=True, check=False, timeout=300).returncode != 0:
        subprocess.run([apt, "update", "-q"], env=env, capture_output=True, check=False, timeout=300)
        proc = subprocess.run(install, env=env, capture_output=True, text=True, check=False, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"apt-get install pgbouncer failed: {proc.stderr[-2000:]}", pytrace=False)
    found = _binary()
    assert found, "pgbouncer installed but not found"
    return found


@dataclass
class PgBouncer:
    """One pgbouncer process in front of the machine's PostgreSQL; its admin console read with psql
    (the console speaks only the simple query protocol, which asyncpg's fetch does not use)."""

    port: int
    user: str
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    def url(self, direct_url: str) -> str:
        """``direct_url`` moved onto this PgBouncer (same user, database and options)."""
        parts = urlsplit(direct_url)
        userinfo = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{self.port}"))

    def show(self, what: str) -> list[dict[str, str]]:
        proc = subprocess.run(
            [
                PSQL,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "pgbouncer",
                "--csv",
                "-c",
                f"SHOW {what}",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return list(csv.DictReader(io.StringIO(proc.stdout)))

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _write_config(folder: Path, port: int, user: str, server: tuple[str, int]) -> Path:
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        "\n".join(
            [
                "[databases]",
                # Every database of the server, under its own name.
                f"* = host={server[0]} port={server[1]}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                # The machine's PostgreSQL trusts loopback; the userlist only names who may connect.
                "auth_type = trust",
                f"auth_file = {folder / 'userlist.txt'}",
                f"admin_users = {user}",
                "pool_mode = transaction",
                f"default_pool_size = {SERVER_POOL_SIZE}",
                "max_client_conn = 200",
                "ignore_startup_parameters = extra_float_digits",
                "",
            ]
        )
    )
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    for path in (folder, ini, folder / "userlist.txt"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return ini


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[PgBouncer]:
    binary = ensure_pgbouncer()
    server = urlsplit(ADMIN_DATABASE_URL)
    user = server.username or "postgres"
    # Not pytest's tmp_path: pgbouncer refuses to run as root and, run as postgres, must read its files.
    folder = Path(tempfile.mkdtemp(prefix="taskflow-pgbouncer-"))
    bouncer = PgBouncer(port=free_port(), user=user, folder=folder)
    ini = _write_config(folder, bouncer.port, user, (server.hostname or "127.0.0.1", server.port or 5432))
    argv = [binary, str(ini)]
    if os.geteuid() == 0:
        argv[1:1] = ["-u", pwd.getpwnam("postgres").pw_name]
    with (folder / "pgbouncer.log").open("ab") as log:
        bouncer.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if bouncer.proc.poll() is not None:
                pytest.fail(f"pgbouncer exited with {bouncer.proc.returncode}: {bouncer.log()}", pytrace=False)
            try:
                socket.create_connection(("127.0.0.1", bouncer.port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"pgbouncer did not listen within 10 s: {bouncer.log()}", pytrace=False)
                time.sleep(0.05)
        yield bouncer
    finally:
        terminate(bouncer.proc)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
async def pooled(pgbouncer: PgBouncer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """API and worker with the pooled URL on PgBouncer and the direct one on PostgreSQL."""
    async with provision("taskflow_e2e_pgb") as env:
        direct = env["TASKFLOW_DATABASE_URL"]
        env["TASKFLOW_DATABASE_DIRECT_URL"] = direct
        env["TASKFLOW_DATABASE_URL"] = pgbouncer.url(direct)
        live = Stack(url=f"http://127.0.0.1:{free_port()}", env=env, logs=tmp_path_factory.mktemp("pgb-logs"))
        try:
            await asyncio.to_thread(live.start_api)
            live.start_worker()
            await asyncio.to_thread(live.wait_for_workers, 1)
            yield live
        finally:
            await asyncio.to_thread(live.stop)


@pytest.fixture
async def api(pooled: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pooled.url, headers=pooled.headers, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
async def direct_db(pooled: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(pooled.env["TASKFLOW_DATABASE_DIRECT_URL"], min_size=1, max_size=2)
    yield pool
    await pool.close()


def database_of(stack: Stack) -> str:
    return urlsplit(stack.env["TASKFLOW_DATABASE_DIRECT_URL"]).path.lstrip("/")


async def test_submit_batch_and_wait_run_through_the_pooler(api: httpx.AsyncClient) -> None:
    created = await submit(api, "test", {"message": "through pgbouncer"})
    # ?wait= is answered by the LISTEN connection (direct URL): a pooled LISTEN would never be woken.
    answer = await api.get(f"{TASKS}/{created['id']}", params={"wait": 10})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "succeeded"

    batch = await api.post(
        f"{TASKS}/batch", json={"tasks": [{"task_type": "test", "payload": {"n": n}} for n in range(30)]}
    )
    assert batch.status_code == 202, batch.text
    ids = [item["id"] for item in batch.json()["items"]]
    for task_id in ids:
        await wait_for_status(api, task_id, "succeeded", within=15)

    ready = await api.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"postgresql": "ok", "redis": "ok"}


async def test_cancel_retry_and_admission_through_the_pooler(api: httpx.AsyncClient, direct_db: asyncpg.Pool) -> None:
    waiting = await submit(api, "test", {}, delay_seconds=60)
    cancelled = await api.post(f"{TASKS}/{waiting['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"

    failing = await submit(api, "fail", {"times": -1}, max_retries=0)
    await wait_for_status(api, failing["id"], "failed", within=10)
    retried = await api.post(f"{TASKS}/{failing['id']}/retry")
    assert retried.status_code == 202, retried.text
    again = await wait_for_status(api, failing["id"], "failed", within=10)
    assert again["error"]["type"] == "DeliberateFailure"
    assert again["started_at"] > failing["created_at"]

    # Admission under max_running 1: the admitter's try-lock, reads and UPDATE are one pooled transaction.
    key = f"pgb-{uuid.uuid4().hex[:6]}"
    assert (await api.put(f"/api/v1/limits/{key}", json={"max_running": 1})).status_code == 201
    first = await submit(api, "sleep", {"seconds": 30}, limit_keys=[key])
    await wait_for_status(api, first["id"], "running", within=10)
    second = await submit(api, "test", {}, limit_keys=[key])
    await asyncio.sleep(1)  # the worker's poll and the reconciler's passes: time enough to start it, were it let
    row = await direct_db.fetchrow("SELECT status, admitted FROM tasks WHERE id = $1::uuid", second["id"])
    assert (row["status"], row["admitted"]) == ("queued", False), "the limit let a second task start"

    # Cancelling the running one frees its slot; the next submit under the key runs admission, which admits the
    # older waiting task (the new one is not due yet).
    assert (await api.post(f"{TASKS}/{first['id']}/cancel")).status_code == 202
    await wait_for_status(api, first["id"], "cancelled", within=5)
    later = await submit(api, "test", {}, limit_keys=[key], delay_seconds=60)
    await wait_for_status(api, second["id"], "succeeded", within=10)
    assert (await api.post(f"{TASKS}/{later['id']}/cancel")).status_code == 200


async def test_the_leader_reenqueues_a_job_lost_from_redis(api: httpx.AsyncClient, pooled: Stack) -> None:
    created = await submit(api, "test", {}, delay_seconds=60)
    task_id = uuid.UUID(created["id"])
    queue = TaskQueue(connect(REDIS_URL, queue_name=pooled.env["TASKFLOW_QUEUE_NAME"]))
    try:
        await queue.remove(task_id)
        assert await queue.missing([task_id]) == [task_id]

        async def back() -> bool:
            return not await queue.missing([task_id])

        # The reconciler, leading through its lock on the direct URL, enqueues it again (grace 1 s, every 0.5 s).
        await wait_until(back, within=10, what="the reconciler re-enqueued the task")
    finally:
        await queue.close()
    assert (await api.post(f"{TASKS}/{created['id']}/cancel")).status_code == 200


async def test_pooled_traffic_went_through_pgbouncer_and_sessions_did_not(
    pgbouncer: PgBouncer, pooled: Stack, direct_db: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    await submit(api, "test", {})  # at least some traffic, whatever ran before
    name = database_of(pooled)
    stats = {row["database"]: row for row in pgbouncer.show("STATS")}
    assert name in stats, stats.keys()
    assert int(stats[name]["total_query_count"]) > 20, stats[name]
    assert int(stats[name]["total_xact_count"]) > 10, stats[name]

    clients = [row for row in pgbouncer.show("CLIENTS") if row["database"] == name]
    names = {row["application_name"] for row in clients}
    assert {"taskflow-api", "taskflow-worker"} <= names, names
    assert LISTENER_APPLICATION_NAME not in names
    assert LEADER_APPLICATION_NAME not in names

    servers = [row for row in pgbouncer.show("SERVERS") if row["database"] == name]
    assert 0 < len(servers) <= SERVER_POOL_SIZE, servers
    through_bouncer = {int(row["remote_pid"]) for row in servers}

    rows = await direct_db.fetch(
        "SELECT pid, application_name, query FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name
    )
    by_name = {r["application_name"]: r for r in rows if r["pid"] not in through_bouncer}
    # The listener and the leader have sessions of their own, straight to PostgreSQL.
    assert LISTENER_APPLICATION_NAME in by_name, rows
    assert LEADER_APPLICATION_NAME in by_name, rows
    # No server connection of PgBouncer's ever ran a LISTEN (its last query would show it: nothing else runs
    # on a connection that listens) or a session advisory lock.
    for row in rows:
        if row["pid"] in through_bouncer:
            assert not row["query"].upper().startswith(("LISTEN", "SELECT PG_ADVISORY_LOCK")), row
