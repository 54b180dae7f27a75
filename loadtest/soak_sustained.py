"""`make soak-sustained`: TaskFlow at about 70 % of its measured maximum for a long while, with
retention, the reconciler and a reader load running, judged on whether it stays flat.

1. The real stack (``loadtest/procs.py``): one API, ``--workers`` workers (each runs the reconciler;
   one leads), over a database and queue of their own, with a short retention (``--retention-seconds``,
   default 120 s) so that the reconciler's purge runs all along, as it would after a week in production.
2. The maximum: ``--probe-seconds`` of open-loop submits at ``--probe-rate`` (far above what one API
   answers), the lower of the accepted and the processed rate (or ``--rate``/SOAK_RATE, no probe).
3. The soak: ``--minutes`` of single submits at ``--load`` (0.7) of that maximum from the open-loop
   generator (``loadtest/openloop.py``, one run per window: latency counted from each request's
   scheduled time), and a reader (list, list by status, get one, queue stats) at ``--read-rate``.
4. Per window (``--window``, 60 s): submits accepted, submit p50/p99, tasks finished per second,
   queue wait (started_at - run_at) p50/p99, reads p99, the size of every table with its indexes
   (pg_total_relation_size), live and dead tuples, vacuums, WAL written, rows purged.
5. Verdicts: flat (the last window's throughput within ±15 % of the first's, p99s not above twice the
   first's), sizes bounded (once retention has kicked in, tasks' size grows at under a fifth of the rate
   it filled at), no task lost (a ledger: every accepted submit is a task that succeeded, whether still
   stored or purged since; a statement trigger counts the purged rows by status).

Prints the windows, the first and last window side by side and the verdicts; writes JSON to
loadtest/results/ (``--out`` to choose). Every loop is bounded; every process binds 127.0.0.1.
The retention bench (``loadtest/retention_bench.py``) measures its phases with :func:`measure_window`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from loadtest.bench import machine, percentile, wait_for_worker
from loadtest.procs import System, provisioned

RESULTS = Path(__file__).resolve().parent / "results"
DAY_SECONDS = 86_400.0
TERMINAL = "('succeeded', 'failed', 'cancelled')"
FLAT_TOLERANCE = 0.15  # throughput: the last window within ±15 % of the first
P99_FACTOR = 2.0  # latency: the last window's p99 at most twice the first's ...
P99_FLOOR_MS = 5.0  # ... or than this, whichever is larger (a 2 ms p99 doubling is noise)
GROWTH_FACTOR = 0.2  # bounded: grows at under a fifth of the rate the table filled at
MAX_READS_PER_S = 200
DRAIN_SECONDS = 180

# The purge deletes rows for good; this ledger keeps their count by status (one insert per DELETE
# statement, from its transition table), so that "no task lost" can still be checked afterwards.
LEDGER_SQL = """
CREATE TABLE soak_purged (status text NOT NULL, n bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION soak_count_purged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO soak_purged (status, n) SELECT status, count(*) FROM gone GROUP BY status;
    RETURN NULL;
END $$;
CREATE TRIGGER soak_count_purged AFTER DELETE ON tasks REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION soak_count_purged();
"""

SIZES_SQL = """
SELECT s.relname AS name, pg_total_relation_size(s.relid) AS total, pg_relation_size(s.relid) AS heap,
       pg_indexes_size(s.relid) AS indexes, s.n_live_tup AS live, s.n_dead_tup AS dead,
       s.vacuum_count + s.autovacuum_count AS vacuums
FROM pg_stat_user_tables s WHERE s.relname <> 'soak_purged' ORDER BY s.relname"""

WAITS_SQL = f"""
SELECT count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wait) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY wait) AS p99
FROM (SELECT EXTRACT(EPOCH FROM started_at - run_at)::float8 * 1000 AS wait FROM tasks
      WHERE status IN {TERMINAL} AND finished_at >= $1 AND finished_at < $2) t"""


def open_loop(url: str, rate: float, seconds: float, connections: int) -> dict[str, Any]:
    """``loadtest/openloop.py`` in a process of its own, with no warm-up: every stored task was a
    counted request, which the ledger needs."""
    argv = [sys.executable, "-m", "loadtest.openloop", "--url", url, "--rate", f"{rate:g}"]
    argv += ["--seconds", f"{seconds:g}", "--warmup", "0", "--connections", str(connections)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 90, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openloop failed: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@dataclass
class Reads:
    """The reader's requests during one window."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0


async def read_load(url: str, rate: float, stop: asyncio.Event, windows: list[Reads], *, limit: float) -> None:
    """Reads at ``rate`` per second, in turn: the newest 50, the newest succeeded 20, one task by id
    (a 404 is right once it was purged), the queue's stats; recorded in the current window (the last
    of ``windows``). Bounded by ``stop`` and by ``limit`` seconds."""
    paths = ["/api/v1/tasks?limit=50", "/api/v1/tasks?status=succeeded&limit=20", "", "/api/v1/queue"]
    ids: list[str] = []
    interval = 1 / min(rate, MAX_READS_PER_S)
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for n in range(int(limit * rate) + 1):
            if stop.is_set():
                return
            kind = n % len(paths)
            path = paths[kind] or (f"/api/v1/tasks/{ids[n % len(ids)]}" if ids else paths[0])
            began = time.perf_counter()
            try:
                response = await client.get(path)
                ok = response.status_code == 200 or (kind == 2 and response.status_code == 404)
                if kind == 0 and response.status_code == 200:
                    ids = [item["id"] for item in response.json()["items"][:20]] or ids
            except httpx.HTTPError:
                ok = False
            window = windows[-1]
            window.latencies_ms.append((time.perf_counter() - began) * 1000)
            window.errors += not ok
            delay = start + (n + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


async def install_ledger(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(LEDGER_SQL)
    finally:
        await conn.close()


async def sizes(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    return {
        r["name"]: {k: int(r[k]) for k in ("total", "heap", "indexes", "live", "dead", "vacuums")}
        for r in await conn.fetch(SIZES_SQL)
    }


async def purged_total(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT COALESCE(sum(n), 0) FROM soak_purged"))


async def measure_window(
    conn: asyncpg.Connection,
    index: int,
    run: Callable[[], dict[str, Any]],
    *,
    began: float,
    reads: Reads | None = None,
    exact_rows: bool = True,
    ledger: bool = True,
) -> dict[str, Any]:
    """Run one window's submits (``run``, in a thread: the open-loop generator) and measure what
    PostgreSQL did meanwhile: tasks finished and their queue wait, sizes, WAL, rows purged."""
    t0, wal0 = await conn.fetchrow("SELECT clock_timestamp(), pg_current_wal_lsn()")
    purged0 = await purged_total(conn) if ledger else 0
    started = time.monotonic()
    submit = await asyncio.to_thread(run)
    t1, wal1 = await conn.fetchrow("SELECT clock_timestamp(), pg_current_wal_lsn()")
    seconds = (t1 - t0).total_seconds()
    waits = await conn.fetchrow(WAITS_SQL, t0, t1)
    read = sorted(reads.latencies_ms) if reads else []
    return {
        "index": index,
        "at_s": round(started - began, 1),
        "seconds": seconds,
        "asked_per_s": submit["rate"],
        "sent": submit["requests"],
        "accepted": submit["statuses"].get("202", 0),
        "refused": submit["answered"] - submit["statuses"].get("202", 0),
        "unanswered": submit["unanswered"] + sum(submit["errors"].values()),
        "submit_per_s": submit["achieved_per_s"],
        "submit_p50_ms": submit["p50_ms"],
        "submit_p99_ms": submit["p99_ms"],
        "submit_max_ms": submit["max_ms"],
        "finished": int(waits["n"]),
        "finished_per_s": int(waits["n"]) / seconds,
        "wait_p50_ms": float(waits["p50"] or 0.0),
        "wait_p99_ms": float(waits["p99"] or 0.0),
        "reads": len(read),
        "read_errors": reads.errors if reads else 0,
        "read_p50_ms": percentile(read, 50),
        "read_p99_ms": percentile(read, 99),
        "wal_bytes": int(await conn.fetchval("SELECT pg_wal_lsn_diff($1, $2)", wal1, wal0)),
        "purged": (await purged_total(conn) - purged0) if ledger else 0,
        "rows": int(await conn.fetchval("SELECT count(*) FROM tasks")) if exact_rows else None,
        "sizes": await sizes(conn),
    }


async def autovacuum_on(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT setting = 'on' FROM pg_settings WHERE name = 'autovacuum'"))


async def vacuum_like_autovacuum(database_url: str, stop: asyncio.Event, *, every: float, limit: float) -> list[str]:
    """Where the server runs with autovacuum off (a test machine's choice, never production's): VACUUM
    (ANALYZE) each table whose dead tuples pass autovacuum's default threshold (50 + 20 % of its live
    ones), checked every ``every`` seconds, so that the sizes measured are those a production server
    keeps. Bounded by ``stop`` and ``limit`` seconds; returns what it vacuumed, and when."""
    done: list[str] = []
    conn = await asyncpg.connect(database_url)
    began = time.monotonic()
    try:
        for _ in range(int(limit / every) + 1):
            if stop.is_set():
                break
            for row in await conn.fetch(
                "SELECT relname FROM pg_stat_user_tables WHERE n_dead_tup > 50 + 0.2 * n_live_tup ORDER BY relname"
            ):
                await conn.execute(f'VACUUM (ANALYZE) "{row["relname"]}"', timeout=600)
                done.append(f"{time.monotonic() - began:.0f}s {row['relname']}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
    finally:
        await conn.close()
    return done


async def drain(conn: asyncpg.Connection, *, within: float) -> int:
    """Wait (at most ``within`` s) until no task is left waiting or running; the number left."""
    deadline = time.monotonic() + within
    while True:
        left = int(await conn.fetchval(f"SELECT count(*) FROM tasks WHERE status NOT IN {TERMINAL}"))
        if left == 0 or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.5)


async def probe(system: System, conn: asyncpg.Connection, args: argparse.Namespace) -> dict[str, Any]:
    """Saturate briefly: the accepted submit rate, and the rate the workers finished tasks meanwhile."""

    def run() -> dict[str, Any]:
        return open_loop(system.url, args.probe_rate, args.probe_seconds, args.connections)

    window = await measure_window(conn, -1, run, began=time.monotonic())
    left = await drain(conn, within=DRAIN_SECONDS)
    maximum = min(window["submit_per_s"], window["finished_per_s"])
    return {"window": window, "max_per_s": maximum, "left_after_drain": left}


async def ledger(conn: asyncpg.Connection, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every accepted submit must be a task that succeeded: stored now, or purged after it finished."""
    stored = {r["status"]: int(r["n"]) for r in await conn.fetch("SELECT status, count(*) AS n FROM tasks GROUP BY 1")}
    purged = {
        r["status"]: int(r["n"]) for r in await conn.fetch("SELECT status, sum(n) AS n FROM soak_purged GROUP BY 1")
    }
    sent = sum(r["sent"] for r in runs)
    accepted = sum(r["accepted"] for r in runs)
    unanswered = sum(r["unanswered"] for r in runs)
    succeeded = stored.get("succeeded", 0) + purged.get("succeeded", 0)
    other = sum(stored.values()) + sum(purged.values()) - succeeded
    return {
        "sent": sent,
        "accepted": accepted,
        "unanswered": unanswered,
        "stored_now": stored,
        "purged": purged,
        "succeeded_total": succeeded,
        "not_succeeded": other,
        "lost": max(0, accepted - succeeded),
        # accepted ≤ succeeded ≤ sent: nothing accepted went missing, nothing was stored twice
        "no_task_lost": accepted <= succeeded <= sent and other == 0,
    }


def bounded(windows: list[dict[str, Any]], *, kicks_in_s: float, start_total: int) -> dict[str, Any]:
    """Once retention runs (windows starting after ``kicks_in_s``), the tasks table (with its indexes)
    must grow at under GROWTH_FACTOR of the rate it filled at before; rows likewise."""
    steady = [w for w in windows if w["at_s"] >= kicks_in_s]
    if len(steady) < 2:
        return {"verdict": None, "why": f"fewer than two windows after retention kicks in ({kicks_in_s:.0f} s)"}
    first, last = steady[0], steady[-1]
    fill_s = max(first["at_s"], 1.0)
    span_s = max(last["at_s"] - first["at_s"], 1.0)
    total = [w["sizes"]["tasks"]["total"] for w in (first, last)]
    fill_rate = (total[0] - start_total) / fill_s
    late_rate = (total[1] - total[0]) / span_s
    out: dict[str, Any] = {
        "kicks_in_s": kicks_in_s,
        "tasks_total_bytes_at_kick_in": total[0],
        "tasks_total_bytes_at_end": total[1],
        "fill_bytes_per_s": fill_rate,
        "late_bytes_per_s": late_rate,
        "size_ok": late_rate <= GROWTH_FACTOR * max(fill_rate, 1.0),
        # PostgreSQL reuses a deleted row's space only once (auto)vacuum has run over the table
        "tasks_vacuums": last["sizes"]["tasks"]["vacuums"],
        "tasks_dead_at_end": last["sizes"]["tasks"]["dead"],
    }
    if first["rows"] is not None and last["rows"] is not None:
        row_fill = first["rows"] / fill_s
        row_late = (last["rows"] - first["rows"]) / span_s
        out.update(
            rows_at_kick_in=first["rows"],
            rows_at_end=last["rows"],
            rows_ok=row_late <= GROWTH_FACTOR * max(row_fill, 1.0),
        )
    out["verdict"] = out["size_ok"] and out.get("rows_ok", True)
    return out


def flat(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    def within(key: str) -> bool:
        return bool(abs(last[key] - first[key]) <= FLAT_TOLERANCE * max(first[key], 1e-9))

    def p99(key: str) -> bool:
        return bool(last[key] <= P99_FACTOR * max(first[key], P99_FLOOR_MS))

    checks = {
        "submit_per_s": within("submit_per_s"),
        "finished_per_s": within("finished_per_s"),
        "submit_p99_ms": p99("submit_p99_ms"),
        "wait_p99_ms": p99("wait_p99_ms"),
    }
    return {"checks": checks, "verdict": all(checks.values())}


# (label, key, format, scale): the rows of the first/last side-by-side table
SIDE_BY_SIDE: list[tuple[str, str, str, float]] = [
    ("submits accepted /s", "submit_per_s", "{:,.0f}", 1),
    ("tasks finished /s", "finished_per_s", "{:,.0f}", 1),
    ("submit p50 ms", "submit_p50_ms", "{:.1f}", 1),
    ("submit p99 ms", "submit_p99_ms", "{:.1f}", 1),
    ("queue wait p50 ms", "wait_p50_ms", "{:.1f}", 1),
    ("queue wait p99 ms", "wait_p99_ms", "{:.1f}", 1),
    ("reads p99 ms", "read_p99_ms", "{:.1f}", 1),
    ("rows purged", "purged", "{:,.0f}", 1),
    ("WAL MB", "wal_bytes", "{:,.1f}", 1e-6),
]


def _cell(window: dict[str, Any], key: str, fmt: str, scale: float) -> str:
    value = window[key]
    return "-" if value is None else fmt.format(value * scale)


def tasks_size(window: dict[str, Any]) -> str:
    tasks = window["sizes"]["tasks"]
    return f"{tasks['heap'] / 1e6:,.1f} + {tasks['indexes'] / 1e6:,.1f} MB, {tasks['dead']:,} dead"


def windows_table(windows: list[dict[str, Any]]) -> str:
    head = (
        "at s",
        "sub/s",
        "fin/s",
        "sub p50/p99 ms",
        "wait p50/p99 ms",
        "read p99",
        "purged",
        "rows",
        "tasks heap + idx",
    )
    rows = [head] + [
        (
            f"{w['at_s']:.0f}",
            f"{w['submit_per_s']:,.0f}",
            f"{w['finished_per_s']:,.0f}",
            f"{w['submit_p50_ms']:.1f} / {w['submit_p99_ms']:.1f}",
            f"{w['wait_p50_ms']:.1f} / {w['wait_p99_ms']:.1f}",
            f"{w['read_p99_ms']:.1f}",
            f"{w['purged']:,}",
            f"{w['rows']:,}" if w["rows"] is not None else "-",
            tasks_size(w),
        )
        for w in windows
    ]
    width = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(width[i]) for i, cell in enumerate(row)) for row in rows)


def side_by_side(first: dict[str, Any], last: dict[str, Any], labels: tuple[str, str]) -> str:
    rows = [("", *labels)]
    rows += [
        (name, _cell(first, key, fmt, scale), _cell(last, key, fmt, scale)) for name, key, fmt, scale in SIDE_BY_SIDE
    ]
    rows.append(("tasks heap + indexes", tasks_size(first), tasks_size(last)))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width[i]) if i == 0 else cell.rjust(width[i]) for i, cell in enumerate(row))
        for row in rows
    )


def settings_for(args: argparse.Namespace) -> dict[str, str]:
    return {
        "auth_enabled": "false",
        "submit_rate_per_second": "0",
        "log_level": args.log_level,
        "retention_days": f"{args.retention_seconds / DAY_SECONDS:.10f}",
        "reconcile_interval_seconds": f"{args.reconcile_interval:g}",
        "worker_concurrency": str(args.concurrency),
    }


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):  # cancelled: processes, database and keys are removed
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)
    report: dict[str, Any] = {"machine": machine(), "settings": vars(args).copy()}
    async with provisioned("taskflow_soak", RESULTS / "logs", **settings_for(args)) as resources:
        await install_ledger(resources.database_url)
        system = System(resources)
        conn = await asyncpg.connect(resources.database_url)
        try:
            system.start_api()
            for _ in range(args.workers):
                system.start_worker()
            await wait_for_worker(system.url)
            start_total = (await sizes(conn))["tasks"]["total"]
            runs: list[dict[str, Any]] = []
            if args.rate:
                rate = args.rate
            else:
                report["probe"] = found = await probe(system, conn, args)
                runs.append(found["window"])
                rate = round(found["max_per_s"] * args.load, 1)
                print(f"maximum {found['max_per_s']:,.0f}/s: the soak runs at {rate:g}/s", flush=True)
            report["rate"] = rate
            began = time.monotonic()
            reads: list[Reads] = [Reads()]
            stop = asyncio.Event()
            total_s = args.minutes * 60
            reader = asyncio.create_task(read_load(system.url, args.read_rate, stop, reads, limit=total_s + 600))
            report["autovacuum"] = await autovacuum_on(conn)
            vacuumer = None
            if not report["autovacuum"] and args.vacuum:
                print("autovacuum is off on this server: the harness vacuums as autovacuum would", flush=True)
                vacuumer = asyncio.create_task(
                    vacuum_like_autovacuum(resources.database_url, stop, every=5, limit=total_s + 600)
                )
            windows: list[dict[str, Any]] = []
            print(windows_table([]), flush=True)
            try:
                for index in range(max(1, round(total_s / args.window))):

                    def run() -> dict[str, Any]:
                        return open_loop(system.url, rate, args.window, args.connections)

                    window = await measure_window(conn, index, run, began=began, reads=reads[-1])
                    reads.append(Reads())
                    windows.append(window)
                    print(windows_table([window]).splitlines()[-1], flush=True)
            finally:
                stop.set()
                await reader
                report["harness_vacuums"] = await vacuumer if vacuumer else []
            runs.extend(windows)
            report["windows"] = windows
            report["left_after_drain"] = await drain(conn, within=DRAIN_SECONDS)
            report["ledger"] = await ledger(conn, runs)
            kicks_in = args.retention_seconds + 2 * args.reconcile_interval
            report["bounded"] = bounded(windows, kicks_in_s=kicks_in, start_total=start_total)
            report["flat"] = flat(windows[0], windows[-1])
        finally:
            await conn.close()
            system.stop_all()
    return report


def verdicts(report: dict[str, Any]) -> str:
    def word(ok: bool | None) -> str:
        return "n/a" if ok is None else ("yes" if ok else "NO")

    flat_checks = ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in report["flat"]["checks"].items())
    size = report["bounded"]
    size_line = size.get("why") or (
        f"tasks {size['tasks_total_bytes_at_kick_in'] / 1e6:,.1f} MB at {size['kicks_in_s']:.0f} s → "
        f"{size['tasks_total_bytes_at_end'] / 1e6:,.1f} MB at the end; "
        f"late growth {size['late_bytes_per_s'] / 1e3:,.1f} kB/s "
        f"against {size['fill_bytes_per_s'] / 1e3:,.1f} kB/s filling, {size['tasks_vacuums']} vacuums"
        + (f"; rows {size['rows_at_kick_in']:,} → {size['rows_at_end']:,}" if "rows_at_end" in size else "")
    )
    led = report["ledger"]
    return "\n".join(
        [
            f"flat:           {word(report['flat']['verdict'])} ({flat_checks})",
            f"sizes bounded:  {word(size['verdict'])} ({size_line})",
            f"no task lost:   {word(led['no_task_lost'])} ({led['accepted']:,} accepted of {led['sent']:,} sent; "
            f"{led['succeeded_total']:,} succeeded, {sum(led['purged'].values()):,} of them purged; "
            f"{led['not_succeeded']} not succeeded; {led['lost']} lost; {report['left_after_drain']} left unfinished)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="soak_sustained", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=15, help="length of the soak (SOAK_MINUTES)")
    parser.add_argument("--window", type=float, default=60, help="seconds per measured window")
    parser.add_argument("--rate", type=float, default=0, help="submits/s; 0: --load of the probed maximum (SOAK_RATE)")
    parser.add_argument("--load", type=float, default=0.7, help="fraction of the maximum")
    parser.add_argument("--probe-rate", type=float, default=1500)
    parser.add_argument("--probe-seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64, help="the open-loop generator's connections")
    parser.add_argument("--read-rate", type=float, default=8, help="reader requests per second")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=50, help="worker concurrency")
    parser.add_argument("--retention-seconds", type=float, default=120, help="how long finished tasks are kept")
    parser.add_argument("--reconcile-interval", type=float, default=5.0, help="the reconciler's pass, seconds")
    parser.add_argument(
        "--vacuum",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="where the server's autovacuum is off, vacuum at its thresholds (else dead rows are never reused)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--out", type=Path, default=None, help="the JSON report (default: loadtest/results/)")
    args = parser.parse_args(argv)
    if args.retention_seconds < 1.5 * args.window:
        parser.error("--retention-seconds must be at least 1.5 windows (a window's tasks are measured before purged)")
    import uvloop

    report = uvloop.run(soak(args))
    windows = report["windows"]
    print(windows_table(windows))
    print(side_by_side(windows[0], windows[-1], ("first window", "last window")))
    print(verdicts(report))
    out = args.out or RESULTS / f"soak-sustained-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
