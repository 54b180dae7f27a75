"""StatusListener: one LISTEN connection per process, fanned out to the requests waiting on tasks.

Migration 0003 makes PostgreSQL announce a status change on ``taskflow_task_status`` as
``'<id> <status>'`` — only for tasks registered in ``task_watches``, because a NOTIFY
serialises commits cluster-wide and every worker transition would pay for it. A process
holds one dedicated connection LISTENing on that channel (not one per waiting request),
registers the tasks its requests wait on, and wakes their subscriptions.

Registering closes the race with a concurrent update: in one transaction the watch row is
written and the task row is locked ``FOR SHARE``, which waits for an update in flight to
commit; any later update must wait for this transaction, so its trigger sees the watch.
The caller reads the row after subscribing and re-reads it whenever woken.

When the connection is lost the listener reconnects with backoff, LISTENs and registers its
watches again, and wakes *every* subscription: notifications sent in between are gone.

Typical use::

    async with listener.subscribe(task_id) as changes:
        task = await repo.get(task_id)
        while not task.status.terminal and await changes.wait(remaining):
            task = await repo.get(task_id)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from uuid import UUID

import asyncpg
import structlog

from taskcore.errors import DependencyUnavailable
from taskcore.store._pool import CONNECTION_ERRORS, describe_error, unavailable

log = structlog.get_logger("taskflow.listener")

CHANNEL = "taskflow_task_status"
APPLICATION_NAME = "taskflow-listener"

_WATCH = """INSERT INTO task_watches (task_id, listener, expires_at)
            SELECT unnest($1::uuid[]), $2, clock_timestamp() + $3::interval
            ON CONFLICT (task_id, listener) DO UPDATE SET expires_at = EXCLUDED.expires_at"""


class Changes:
    """One subscriber's wake-up flag: set when its task changed (or may have changed)."""

    def __init__(self, task_id: UUID) -> None:
        self.task_id = task_id
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a change; True if one came. Clears the flag."""
        if seconds <= 0:
            return False
        try:
            await asyncio.wait_for(self._event.wait(), seconds)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class StatusListener:
    """Owns the LISTEN connection of this process, its task watches and the subscriptions."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = 5.0,
        health_interval: float = 10.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._health_interval = health_interval
        self._max_backoff = max_backoff
        # Rows of a process that died expire after a few missed refreshes.
        self._ttl = timedelta(seconds=max(60.0, health_interval * 6))
        self._id = uuid.uuid4().hex
        self._subscribers: dict[UUID, set[Changes]] = {}
        self._conn: asyncpg.Connection | None = None
        self._db = asyncio.Lock()  # one statement at a time on the listener's connection
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connections = 0  # how many times a LISTEN connection was established (for tests and logs)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Start listening in the background; returns at once (PostgreSQL may still be down)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="taskflow-status-listener")

    async def wait_connected(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @asynccontextmanager
    async def subscribe(self, task_id: UUID) -> AsyncIterator[Changes]:
        """Be woken when ``task_id`` changes status. DependencyUnavailable while not listening."""
        if not self._connected.is_set():
            raise DependencyUnavailable("postgresql", "not listening for task changes")
        changes = Changes(task_id)
        self._subscribers.setdefault(task_id, set()).add(changes)
        try:
            await self._register([task_id])
            yield changes
        finally:
            subscribers = self._subscribers.get(task_id)
            if subscribers is not None:
                subscribers.discard(changes)
                if not subscribers:
                    del self._subscribers[task_id]
                    await self._unregister(task_id)

    @property
    def subscriptions(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    # -- watches ---------------------------------------------------------------------------

    async def _register(self, task_ids: list[UUID]) -> None:
        """Write the watches, waiting (FOR SHARE) for updates of these tasks already in flight."""
        async with self._db:
            conn = self._conn
            if conn is None or conn.is_closed():
                raise DependencyUnavailable("postgresql", "not listening for task changes")
            try:
                async with conn.transaction():
                    await conn.execute(_WATCH, task_ids, self._id, self._ttl)
                    await conn.execute("SELECT 1 FROM tasks WHERE id = ANY($1::uuid[]) FOR SHARE", task_ids)
            except CONNECTION_ERRORS as exc:
                self._lost.set()
                raise unavailable(exc) from exc

    async def _unregister(self, task_id: UUID) -> None:
        """Best effort: a row left behind only costs a needless NOTIFY until it expires."""
        async with self._db:
            conn = self._conn
            if conn is None or conn.is_closed() or task_id in self._subscribers:
                return
            try:
                await conn.execute("DELETE FROM task_watches WHERE task_id = $1 AND listener = $2", task_id, self._id)
            except CONNECTION_ERRORS:
                self._lost.set()

    async def _refresh(self, conn: asyncpg.Connection) -> None:
        """Keep this process's watches alive, drop expired ones of any process; doubles as a ping."""
        async with self._db:
            await conn.execute(
                "UPDATE task_watches SET expires_at = clock_timestamp() + $2::interval WHERE listener = $1",
                self._id,
                self._ttl,
                timeout=self._connect_timeout,
            )
            await conn.execute(
                "DELETE FROM task_watches WHERE expires_at < clock_timestamp()", timeout=self._connect_timeout
            )

    # -- the connection ------------------------------------------------------------------

    def _on_notification(self, conn: object, pid: int, channel: str, payload: str) -> None:
        task_id, _, _status = payload.partition(" ")
        try:
            key = UUID(task_id)
        except ValueError:
            return
        for changes in self._subscribers.get(key, ()):
            changes.notify()

    def _on_termination(self, conn: object) -> None:
        self._lost.set()

    def _wake_all(self) -> None:
        for subscribers in self._subscribers.values():
            for changes in subscribers:
                changes.notify()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                self._lost.clear()
                conn.add_termination_listener(self._on_termination)
                await conn.add_listener(CHANNEL, self._on_notification)
                async with self._db:
                    self._conn = conn
                    if self._subscribers:  # waits that outlived the previous connection
                        await conn.execute(_WATCH, list(self._subscribers), self._id, self._ttl)
                self.connections += 1
                self._connected.set()
                self._wake_all()  # changes made while we were not listening are unknown: re-read
                log.info("listening for task changes", reconnect=self.connections > 1)
                backoff = 0.1
                await self._watch(conn)
            except CONNECTION_ERRORS as exc:
                log.warning("task change listener lost its connection", error=describe_error(exc)[0])
            finally:
                self._connected.clear()
                self._conn = None
                if conn is not None:
                    await self._close(conn)
            self._wake_all()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _connect(self) -> asyncpg.Connection:
        attempt = asyncio.ensure_future(
            asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, server_settings={"application_name": APPLICATION_NAME}
            )
        )
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # Stopped mid-handshake: let the attempt end (bounded by its timeout) and close what it opened,
            # rather than leave asyncpg a half-open connection whose failure nobody collects.
            with contextlib.suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
                opened = await attempt
                await self._close(opened)
            raise

    async def _close(self, conn: asyncpg.Connection) -> None:
        """Remove this process's watches and close politely; a connection that does not answer is cut."""
        if conn.is_closed():
            return
        try:
            await conn.execute("DELETE FROM task_watches WHERE listener = $1", self._id, timeout=self._connect_timeout)
            await conn.close(timeout=self._connect_timeout)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError):
            conn.terminate()

    async def _watch(self, conn: asyncpg.Connection) -> None:
        """Return when the connection is gone: closed by the server, or not answering a refresh."""
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self._health_interval)
                return
            except TimeoutError:
                await self._refresh(conn)
