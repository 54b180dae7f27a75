"""A callback receiver on 127.0.0.1 for the tests and the callback-flood bench step: a minimal
HTTP/1.1 server (asyncio streams, keep-alive) that records every POST and answers as scripted.

``script`` maps a path to the statuses of its successive requests (the last one repeats; 200 when
the path is not scripted). A status of ``HOLD`` keeps that request unanswered until ``release()``
(or ``hold_seconds``), to stand for a receiver that is slow while its sender dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field

HOLD = -1
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.time() when the body was in
    status: int  # what was (or was to be) answered


@dataclass
class Receiver:
    script: dict[str, list[int]] = field(default_factory=dict)
    hold_seconds: float = 60.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _server: asyncio.Server | None = None

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def release(self) -> None:
        self._released.set()

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, count: int, *, path: str | None = None, within: float = 10.0) -> list[Received]:
        """The requests (to ``path``) once there are at least ``count``; AssertionError after ``within`` s."""

        def enough() -> bool:
            return len(self.on(path) if path else self.received) >= count

        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(enough), within)
            except TimeoutError:
                got = len(self.on(path) if path else self.received)
                raise AssertionError(f"{got} of {count} callbacks to {path or 'any path'} within {within}s") from None
        return self.on(path) if path else list(self.received)

    def _status_for(self, path: str) -> int:
        statuses = self.script.get(path) or [200]
        nth = self._seen[path]
        self._seen[path] += 1
        return statuses[min(nth, len(statuses) - 1)]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                if len(head) > MAX_HEADER_BYTES:
                    return
                lines = head.decode("latin-1").split("\r\n")
                target = ([*lines[0].split(" "), "", ""])[1]
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = min(int(headers.get("content-length", "0") or 0), MAX_BODY_BYTES)
                body = await reader.readexactly(length) if length else b""
                status = self._status_for(target)
                async with self._arrived:
                    self.received.append(Received(target, headers, body, time.time(), status))
                    self._arrived.notify_all()
                if status == HOLD:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._released.wait(), self.hold_seconds)
                    status = 200
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
