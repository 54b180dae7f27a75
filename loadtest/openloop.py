"""An open-loop HTTP/1.1 load generator: requests at fixed send times, latency from the schedule.

``python -m loadtest.openloop --url http://127.0.0.1:8000 --rate 300 --seconds 10`` sends
``rate * seconds`` copies of one pre-encoded request (by default a single task submit), request
*i* due at ``start + i / rate``, over a fixed set of keep-alive connections (no pipelining: one
request in flight per connection). A request whose time has come while every connection is
busy waits for the next free one, and its latency is counted from its scheduled time, not from
when it could be written: the queueing a slow server causes is measured instead of hidden
(the "coordinated omission" of closed-loop tools, which simply send less while the server
stalls). With ``--closed``, it is that closed loop on purpose: each of ``--connections``
connections sends its next request as soon as the answer to the previous one arrives, for
``--seconds`` (no rate: the server's throughput at that concurrency is what is measured, and
latency is from the write). Prints one JSON object: percentiles, the rate achieved, status codes, and the
generator's own CPU time per request, so a reader can check that it was not the bottleneck.

Deliberately small (asyncio protocols, a Content-Length parser, pre-encoded bytes) so that it
costs about a tenth of a millisecond of CPU per request or less; it pins itself to ``--cpu`` when asked.
Every run is bounded: ``rate * seconds`` requests, and a deadline ``--grace`` seconds after
the last one is due. Loopback only: the URL's host must be a 127.0.0.0/8 address or localhost.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

DEFAULT_BODY = b'{"task_type": "test", "payload": {"message": "rate"}}'
MAX_REQUESTS = 1_000_000
CRLF2 = b"\r\n\r\n"


def build_request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The request bytes, encoded once and written as they are for every request."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (NaN when empty)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


@dataclass
class Results:
    latencies_ms: list[float] = field(default_factory=list)  # from the scheduled send time
    service_ms: list[float] = field(default_factory=list)  # from the moment the request was written
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    last_done: float = 0.0


class Connection(asyncio.Protocol):
    """One keep-alive connection; answers are parsed just far enough to find their end."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.current: tuple[float, float] | None = None  # (scheduled, written) of the request in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, scheduled: float) -> None:
        assert self.transport is not None
        self.current = (scheduled, time.perf_counter())
        self.transport.write(self.pool.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.current is not None:
            end = self.buffer.find(CRLF2)
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = 0
            marker = head.find(b"\r\ncontent-length:")
            if marker >= 0:
                stop = head.find(b"\r\n", marker + 2)
                length = int(head[marker + 17 : stop if stop >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            status = int(head[9:12])
            del self.buffer[: end + 4 + length]
            scheduled, written = self.current
            self.current = None
            self.pool.answered(self, status, scheduled, written, closing=b"\r\nconnection: close" in head)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)


class Pool:
    """Connections, the requests waiting for one, and the results."""

    def __init__(self, host: str, port: int, request: bytes, size: int, results: Results) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.size = size
        self.results = results
        self.idle: deque[Connection] = deque()
        self.waiting: deque[float] = deque()  # scheduled times of requests due but not yet written
        self.all: set[Connection] = set()
        self.count_from = 0.0
        self.closed_until: float | None = None  # closed loop: an answer sends the next request until then
        self.budget = 0  # closed loop: requests it may still send

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.size - len(self.all)):
            transport, conn = await loop.create_connection(lambda: Connection(self), self.host, self.port)
            conn.transport = transport  # uvloop may call connection_made only after this returns
            self.all.add(conn)
            self.idle.append(conn)

    def due(self, scheduled: float) -> None:
        if self.idle:
            self.idle.popleft().send(scheduled)
        else:
            self.waiting.append(scheduled)

    def answered(self, conn: Connection, status: int, scheduled: float, written: float, *, closing: bool) -> None:
        now = time.perf_counter()
        results = self.results
        if scheduled >= self.count_from:  # warm-up answers are not counted
            results.latencies_ms.append((now - scheduled) * 1000)
            results.service_ms.append((now - written) * 1000)
            results.statuses[status] += 1
            results.last_done = now
        if closing:
            assert conn.transport is not None
            conn.transport.close()
            return
        if self.closed_until is not None:
            if now < self.closed_until and self.budget > 0:
                self.budget -= 1
                conn.send(now)
            else:
                self.idle.append(conn)
            return
        if self.waiting:
            conn.send(self.waiting.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: Connection) -> None:
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.current is not None:
            self.results.errors["connection lost"] += 1
            conn.current = None
        asyncio.get_running_loop().create_task(self._replace())

    async def _replace(self) -> None:
        try:
            await self.open()
        except OSError as exc:
            self.results.errors[type(exc).__name__] += 1
            return
        while self.waiting and self.idle:
            self.idle.popleft().send(self.waiting.popleft())

    def in_flight(self) -> int:
        return sum(1 for conn in self.all if conn.current is not None) + len(self.waiting)


def check_loopback(host: str) -> None:
    if host == "localhost":
        return
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to load {host}: only loopback addresses are allowed")


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    check_loopback(host)
    headers = json.loads(args.headers) if args.headers else {}
    body = args.body.encode() if args.body else DEFAULT_BODY
    request = build_request(f"{host}:{port}", args.path, body, headers)
    if args.closed:
        return await run_closed(args, host, port, request)
    total = min(MAX_REQUESTS, round(args.rate * args.seconds))
    warm = round(args.rate * args.warmup)
    results = Results()
    pool = Pool(host, port, request, args.connections, results)
    await pool.open()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter() + 0.05
    interval = 1 / args.rate
    pool.count_from = measured_from = start + warm * interval - interval / 2
    late = 0.0
    for i in range(warm + total):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
        pool.due(scheduled)
    unanswered, cpu_after = await drain(pool, args.grace)
    report = summary(results, measured_from, cpu_before, cpu_after, sent=warm + total)
    return {
        "generator": "openloop",
        "rate": args.rate,
        "seconds": args.seconds,
        "connections": args.connections,
        "requests": total,
        "unanswered": unanswered,
        **report,
        "max_send_lag_ms": late * 1000,  # how far behind its own schedule the generator fell
    }


async def run_closed(args: argparse.Namespace, host: str, port: int, request: bytes) -> dict[str, object]:
    """Each connection sends its next request when its answer arrives, for ``--seconds`` after ``--warmup``."""
    results = Results()
    pool = Pool(host, port, request, args.connections, results)
    await pool.open()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    pool.count_from = start + args.warmup
    pool.closed_until = pool.count_from + args.seconds
    pool.budget = MAX_REQUESTS
    while pool.idle:
        pool.budget -= 1
        pool.idle.popleft().send(time.perf_counter())
    await asyncio.sleep(max(0.0, pool.closed_until - time.perf_counter()))
    unanswered, cpu_after = await drain(pool, args.grace)
    sent = MAX_REQUESTS - pool.budget
    return {
        "generator": "closed",
        "rate": None,
        "seconds": args.seconds,
        "connections": args.connections,
        "requests": sent,
        "unanswered": unanswered,
        **summary(results, pool.count_from, cpu_before, cpu_after, sent=sent),
    }


async def drain(pool: Pool, grace: float) -> tuple[int, resource.struct_rusage]:
    """Wait up to ``grace`` seconds for the answers still due, then close every connection: (how many
    stayed unanswered, the generator's CPU usage at that moment)."""
    for _ in range(round(grace * 100)):
        if not pool.in_flight():
            break
        await asyncio.sleep(0.01)
    unanswered = pool.in_flight()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for conn in list(pool.all):
        if conn.transport is not None:
            conn.transport.close()
    await asyncio.sleep(0)
    return unanswered, cpu_after


def summary(
    results: Results,
    measured_from: float,
    cpu_before: resource.struct_rusage,
    cpu_after: resource.struct_rusage,
    *,
    sent: int,
) -> dict[str, object]:
    """Percentiles, the rate achieved and the generator's CPU, shared by both modes."""
    answered = len(results.latencies_ms)
    ordered = sorted(results.latencies_ms)
    service = sorted(results.service_ms)
    span = max(results.last_done - measured_from, 1e-9)
    cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return {
        "answered": answered,
        "errors": dict(results.errors),
        "statuses": {str(k): v for k, v in sorted(results.statuses.items())},
        "achieved_per_s": answered / span,
        "p50_ms": percentile(ordered, 50),
        "p90_ms": percentile(ordered, 90),
        "p95_ms": percentile(ordered, 95),
        "p99_ms": percentile(ordered, 99),
        "p999_ms": percentile(ordered, 99.9),
        "max_ms": ordered[-1] if ordered else float("nan"),
        "service_p50_ms": percentile(service, 50),
        "service_p99_ms": percentile(service, 99),
        "generator_cpu_s": cpu_s,
        "generator_cpu_us_per_request": cpu_s * 1e6 / max(sent, 1),
        "cpu": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openloop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL, loopback only")
    parser.add_argument("--path", default="/api/v1/tasks")
    parser.add_argument("--rate", type=float, default=None, help="requests per second (open loop)")
    parser.add_argument(
        "--closed", action="store_true", help="closed loop: each connection sends again as soon as answered"
    )
    parser.add_argument("--seconds", type=float, default=10, help="measured duration")
    parser.add_argument("--warmup", type=float, default=1, help="seconds sent first and not counted")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--grace", type=float, default=10, help="wait for answers this long after the last send")
    parser.add_argument("--headers", default="", help="extra request headers as a JSON object")
    parser.add_argument("--body", default="", help="request body (default: one `test` task)")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to that CPU")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or (not args.closed and (args.rate is None or args.rate <= 0)):
        parser.error("--seconds and (without --closed) --rate must be positive")
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop

        report = uvloop.run(run(args))
    except ImportError:
        report = asyncio.run(run(args))
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
