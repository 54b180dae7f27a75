"""`make retention-bench`: does the reconciler's purge of millions of finished tasks hurt live traffic?

1. A database of its own holding ``--rows`` finished tasks (RETENTION_ROWS, default 10,000,000), loaded
   by ``INSERT ... SELECT generate_series`` in chunks of ``--chunk`` rows (one transaction each; the
   secondary indexes are dropped meanwhile and built again afterwards, then VACUUM ANALYZE). Of them,
   ``--young-share`` (30 %) finished within the retention and are stored first; the rest finished 38 to
   8 days ago, in time order, behind them in the heap: a table whose purged head has been reused.
2. The live load: open-loop single submits at ``--rate`` for ``--seconds`` (``loadtest/openloop.py``)
   with real workers, once per phase, the workers restarted with the phase's settings:
   - ``no-purge``: a retention longer than the rows' age: the reconciler runs, nothing is old enough;
   - ``one-batch``: the default retention; the real ``purge_finished`` with its batch
     (TASKFLOW_RECONCILE_BATCH_SIZE) once per reconciler pass, as before TASKFLOW_RETENTION_PURGE_SECONDS;
   - ``paced``: the defaults: batches for up to TASKFLOW_RETENTION_PURGE_SECONDS (2 s) a pass, each
     followed by a pause as long as it took.
3. Per phase (``soak_sustained.measure_window``): submit p50/p99, queue wait p50/p99, tasks finished per
   second, rows purged per second, WAL written, the tasks table's size and dead tuples. Verdict per
   purge phase: it hurts if submit or queue-wait p99 is above 1.5 times the no-purge phase's, or throughput
   below 0.9 times; and whether it keeps up (purges at least as fast as tasks arrive).

Prints a table and writes JSON to loadtest/results/. The database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from loadtest import latency
from loadtest.bench import machine, wait_for_worker
from loadtest.procs import REDIS_URL, System, provisioned, purge, stop
from loadtest.soak_sustained import DAY_SECONDS, RESULTS, drain, measure_window, open_loop, tasks_size
from taskcore.queue import connect

SEED_TYPE = "retention.seed"  # finished 38 to 8 days ago: the purge's to delete
YOUNG_TYPE = "retention.young"  # finished within the retention: kept
HURTS_P99 = 1.5
HURTS_THROUGHPUT = 0.9
PRODUCTION_RATE = 1000  # tasks/s of issue 17: 86 million rows a day to purge

SEED_SQL = """
INSERT INTO tasks (id, task_type, payload, status, attempt, max_retries, timeout_seconds,
                   created_at, updated_at, run_at, started_at, finished_at, result)
SELECT gen_random_uuid(), $5, jsonb_build_object('n', i), 'succeeded', 1, 3, 300,
       t, t + interval '20 ms', t, t + interval '5 ms', t + interval '20 ms', jsonb_build_object('echo', i)
FROM generate_series($1::bigint, $2::bigint) AS i,
     LATERAL (SELECT $3::timestamptz + make_interval(secs => (i - $1) * $4::float8)) AS x(t)"""

# The indexes that back no constraint: dropped while the rows load and built again afterwards (much faster
# than maintaining fifteen indexes row by row); the primary key and the idempotency key stay.
SECONDARY_INDEXES_SQL = """
SELECT indexname, indexdef FROM pg_indexes i WHERE schemaname = 'public' AND tablename = 'tasks'
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) ORDER BY indexname"""

# name → worker settings (TASKFLOW_ prefix added); retention is what turns the purge on or off
PHASES: dict[str, dict[str, str]] = {
    "no-purge": {"retention_days": "3650"},
    "one-batch": {"retention_purge_seconds": "0"},
    "paced": {},  # the defaults: TASKFLOW_RETENTION_PURGE_SECONDS=2
}


async def load(conn: asyncpg.Connection, task_type: str, rows: int, chunk: int, *, days: tuple[float, float]) -> None:
    """``rows`` succeeded tasks finished evenly from ``days[0]`` to ``days[1]`` days ago, in time order."""
    oldest = datetime.now(UTC) - timedelta(days=days[0])
    spread = (days[0] - days[1]) * DAY_SECONDS / max(rows, 1)  # seconds between two rows' times
    for low in range(0, rows, chunk):
        high = min(rows, low + chunk) - 1
        await conn.execute(
            SEED_SQL, low, high, oldest + timedelta(seconds=low * spread), spread, task_type, timeout=3600
        )
        print(f"  {task_type}: {high + 1:,} of {rows:,} rows", flush=True)


async def seed(database_url: str, rows: int, chunk: int, *, young_share: float) -> dict[str, Any]:
    """``rows`` finished tasks: the young share (inside the retention) first, then the old ones, so that
    the old rows sit behind the young in the heap, as once the purged space at its head is reused."""
    young = round(rows * young_share)
    conn = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        indexes = await conn.fetch(SECONDARY_INDEXES_SQL)
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        await load(conn, YOUNG_TYPE, young, chunk, days=(6.0, 1 / 24))
        await load(conn, SEED_TYPE, rows - young, chunk, days=(38.0, 8.0))
        loaded_s = time.perf_counter() - started
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for index in indexes:
            await conn.execute(index["indexdef"], timeout=3600)
        indexed_s = time.perf_counter() - started - loaded_s
        await conn.execute("VACUUM (ANALYZE) tasks", timeout=3600)
        total = await conn.fetchval("SELECT pg_total_relation_size('tasks')")
    finally:
        await conn.close()
    return {
        "rows": rows,
        "old_rows": rows - young,
        "young_rows": young,
        "load_seconds": loaded_s,
        "index_seconds": indexed_s,
        "seconds_with_vacuum": time.perf_counter() - started,
        "tasks_total_bytes": total,
    }


async def seeds_left(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM tasks WHERE task_type = '{SEED_TYPE}'", timeout=600))


async def phase(system: System, conn: asyncpg.Connection, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Workers with this phase's settings, then ``--seconds`` of live load measured as one window."""
    for worker in system.workers:
        stop(worker)
    system.workers.clear()
    await drain(conn, within=120)
    before = await seeds_left(conn)
    overrides = {f"TASKFLOW_{k.upper()}": v for k, v in PHASES[name].items()}
    for _ in range(args.workers):
        system.start_worker(**overrides)
    await wait_for_worker(system.url)

    def run() -> dict[str, Any]:
        return open_loop(system.url, args.rate, args.seconds, args.connections)

    # CPU of this database's PostgreSQL backends (API, workers, this harness): what the purge costs the
    # server, steadier than latency on a shared machine. A backend that starts meanwhile counts from zero.
    database_url = system.resources.database_url
    cpu = {pid: latency.cpu_seconds([pid]) for pid in await latency.backend_pids(database_url)}
    window = await measure_window(conn, 0, run, began=time.monotonic(), exact_rows=False, ledger=False)
    used = sum(latency.cpu_seconds([pid]) - cpu.get(pid, 0.0) for pid in await latency.backend_pids(database_url))
    window["postgres_cpu_share"] = used / window["seconds"]
    after = await seeds_left(conn)
    window.update(name=name, settings=PHASES[name], seeds_before=before, seeds_after=after)
    window["purged"] = before - after
    window["load_average"] = os.getloadavg()[0]
    window["purged_per_s"] = (before - after) / window["seconds"]
    print(describe(window), flush=True)
    return window


def describe(w: dict[str, Any]) -> str:
    return (
        f"{w['name']:>12}: {w['submit_per_s']:,.0f} submits/s (asked {w['asked_per_s']:g}), "
        f"{w['finished_per_s']:,.0f} finished/s; "
        f"submit p50/p99 {w['submit_p50_ms']:.1f} / {w['submit_p99_ms']:.1f} ms; queue wait p50/p99 "
        f"{w['wait_p50_ms']:.1f} / {w['wait_p99_ms']:.1f} ms; purged {w['purged']:,} ({w['purged_per_s']:,.0f}/s); "
        f"PostgreSQL {w['postgres_cpu_share'] * 100:.0f}% of a core; "
        f"WAL {w['wal_bytes'] / 1e6:,.0f} MB; tasks {tasks_size(w)}; load {w['load_average']:.1f}"
    )


def best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """A phase's best round counts (as in `make bench`): the lowest p99s and the highest rates of its rounds."""
    out = dict(rounds[0])
    for key in ("submit_p50_ms", "submit_p99_ms", "wait_p50_ms", "wait_p99_ms"):
        out[key] = min(r[key] for r in rounds)
    out["postgres_cpu_share"] = min(r["postgres_cpu_share"] for r in rounds)
    for key in ("submit_per_s", "finished_per_s", "purged_per_s"):
        out[key] = max(r[key] for r in rounds)
    out["rounds"] = len(rounds)
    return out


def judge(base: dict[str, Any], other: dict[str, Any], rate: float) -> dict[str, Any]:
    ratios = {
        "submit_p99": other["submit_p99_ms"] / max(base["submit_p99_ms"], 1e-9),
        "wait_p99": other["wait_p99_ms"] / max(base["wait_p99_ms"], 1e-9),
        "throughput": other["finished_per_s"] / max(base["finished_per_s"], 1e-9),
        "postgres_cpu": other["postgres_cpu_share"] / max(base["postgres_cpu_share"], 1e-9),
    }
    hurts = (
        ratios["submit_p99"] > HURTS_P99 or ratios["wait_p99"] > HURTS_P99 or ratios["throughput"] < HURTS_THROUGHPUT
    )
    return {
        "ratios": ratios,
        "hurts": hurts,
        "keeps_up_with_this_rate": other["purged_per_s"] >= rate,
        "keeps_up_with_1000_per_s": other["purged_per_s"] >= PRODUCTION_RATE,
        "days_to_purge_a_day_at_1000_per_s": PRODUCTION_RATE / max(other["purged_per_s"], 1e-9),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)
    report: dict[str, Any] = {"machine": machine(), "settings": {k: str(v) for k, v in vars(args).items()}}
    settings = {"auth_enabled": "false", "submit_rate_per_second": "0", "log_level": args.log_level}
    async with provisioned("taskflow_retention", RESULTS / "logs", **settings) as resources:
        print(f"loading {args.rows:,} finished tasks into {resources.name}", flush=True)
        report["seed"] = await seed(resources.database_url, args.rows, args.chunk, young_share=args.young_share)
        loaded = report["seed"]
        print(
            f"loaded in {loaded['load_seconds']:.0f} s, indexed in {loaded['index_seconds']:.0f} s "
            f"(with VACUUM ANALYZE {loaded['seconds_with_vacuum']:.0f} s), "
            f"tasks {loaded['tasks_total_bytes'] / 1e9:.2f} GB",
            flush=True,
        )
        system = System(resources)
        conn = await asyncpg.connect(resources.database_url)
        try:
            system.start_api()
            # Rounds alternate the phases, so that each sees the same (shared, noisy) machine.
            report["phases"] = [
                await phase(system, conn, name, args) for _ in range(args.rounds) for name in args.phases
            ]
        finally:
            system.stop_all()
            # The seeded rows never had arq keys: clear the live tasks' keys here and empty the table,
            # so that dropping the database does not first read ten million ids.
            live = [
                str(r["id"])
                for r in await conn.fetch(
                    "SELECT id FROM tasks WHERE task_type <> ALL($1::text[])", [SEED_TYPE, YOUNG_TYPE]
                )
            ]
            redis = connect(REDIS_URL, queue_name=resources.queue_name)
            try:
                await purge(redis, resources.queue_name, live)
            finally:
                await redis.aclose(close_connection_pool=True)
            await conn.execute("TRUNCATE tasks CASCADE")
            await conn.close()
    phases = {name: best([p for p in report["phases"] if p["name"] == name]) for name in args.phases}
    report["best"] = phases
    if "no-purge" in phases:
        report["verdicts"] = {
            name: judge(phases["no-purge"], p, args.rate) for name, p in phases.items() if name != "no-purge"
        }
    return report


def verdict_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, v in report.get("verdicts", {}).items():
        r = v["ratios"]
        lines.append(
            f"{name:>12} vs no-purge: submit p99 {r['submit_p99']:.2f}x, queue wait p99 {r['wait_p99']:.2f}x, "
            f"throughput {r['throughput']:.2f}x, PostgreSQL CPU {r['postgres_cpu']:.2f}x "
            f"→ {'HURTS' if v['hurts'] else 'does not hurt'}; "
            f"keeps up with this rate: {'yes' if v['keeps_up_with_this_rate'] else 'NO'}, "
            f"with 1,000/s: {'yes' if v['keeps_up_with_1000_per_s'] else 'NO'}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="retention_bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="finished tasks loaded (RETENTION_ROWS)")
    parser.add_argument("--chunk", type=int, default=500_000, help="rows per INSERT ... SELECT")
    parser.add_argument(
        "--young-share",
        type=float,
        default=0.3,
        help="of --rows, finished within the retention and stored first (the purge must look past them)",
    )
    parser.add_argument("--rate", type=float, default=200, help="live submits per second")
    parser.add_argument("--seconds", type=float, default=60, help="live load per phase")
    parser.add_argument("--phases", type=lambda s: s.split(","), default=list(PHASES), help=",".join(PHASES))
    parser.add_argument("--rounds", type=int, default=2, help="each phase this many times, alternating")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if unknown := set(args.phases) - set(PHASES):
        parser.error(f"unknown phases {sorted(unknown)}: {', '.join(PHASES)}")
    import uvloop

    git = shutil.which("git") or "git"  # which purge code is measured: taken before the workers start
    described = subprocess.run([git, "describe", "--always", "--dirty"], capture_output=True, text=True, check=False)
    report = uvloop.run(bench(args))
    report["commit"] = described.stdout.strip()
    for p in report["best"].values():
        print(f"best of {p['rounds']}: {describe(p)}")
    for line in verdict_lines(report):
        print(line)
    out = args.out or RESULTS / f"retention-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
