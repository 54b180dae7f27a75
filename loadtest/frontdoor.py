"""The front door: TaskFlow's single submit against a bare endpoint, measured in the same run.

Most clients submit one task per request, so what one API process answers matters as much as
the batch path. The baseline is ``loadtest/bare_api.py`` (FastAPI + uvicorn served like
``taskflow-api``, one INSERT into the same ``tasks`` table and one enqueue through the same
queue adapter), started against the same database and Redis as the API under test. Then:

- closed loop at each concurrency of ``--concurrency`` (1, 4, 16, 50 by default): N keep-alive
  connections, each sending again as soon as it is answered (``openloop --closed``; wrk too
  when installed, as a cross-check), TaskFlow and the bare app in turn, ``--repeats`` times in
  alternating order; the ratio is the median of the interleaved pairs' ratios (target ≥ 0.9x);
- open loop at each rate of ``--rates`` (1,000/s included): latency from each request's
  scheduled send time (target for TaskFlow: p99 ≤ 25 ms at 1,000/s), both targets in turn.

Each point records the CPU every party used per request (the API or bare process, this
database's PostgreSQL backends, Redis, the generator). ``--pinning`` says who runs where on the
first two CPUs: ``none`` (the default: nothing pinned), ``api`` (the API on the first, the
generator on the second: ``latency.py``'s sweep), ``apart`` (the API on the first; the generator and
this database's PostgreSQL backends on the second). docs/performance.md ("The front door")
explains what that changes.

``python -m loadtest.frontdoor`` runs it against an API and database of its own; ``bench.py``
calls :func:`run` with its own API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from loadtest import latency
from loadtest.procs import REDIS_URL, STARTUP_SECONDS, Resources, System, free_port, provisioned, stop

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCIES = (1, 4, 16, 50)
RATES = (100.0, 200.0, 300.0, 400.0, 1000.0)
JUDGED_RATE = 1000.0
TARGETS = {"ratio": 0.9, "p99_ms": 25.0}
STARVED_RATE, STARVED_SHARE = 0.95, 0.8  # an open-loop point below 95 % of its rate on under 80 % of a core
PINNINGS = ("none", "api", "apart")
TARGET_NAMES = ("taskflow", "bare")

Log = Callable[[str], object]


def redis_of(resources: Resources) -> str:
    return resources.env.get("TASKFLOW_REDIS_URL", REDIS_URL)


def start_bare(resources: Resources) -> tuple[subprocess.Popen[bytes], str]:
    """The bare app on a free port, against the run's database and queue; (process, URL) once ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = resources.spawn(
        [sys.executable, "-m", "loadtest.bare_api", "--port", str(port)],
        "bare-api",
        BARE_DATABASE_URL=resources.database_url,
        BARE_REDIS_URL=redis_of(resources),
        BARE_QUEUE=resources.queue_name,
    )
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the bare app exited: {resources.log_tail('bare-api')}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"the bare app did not get ready: {resources.log_tail('bare-api')}")


# --- generators --------------------------------------------------------------------------------------


def run_closed(url: str, connections: int, seconds: float, cpu: int | None, headers: dict[str, str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "loadtest.openloop", "--url", url, "--closed"]
    argv += ["--connections", str(connections), "--seconds", f"{seconds:g}", "--warmup", "0.5"]
    if cpu is not None:
        argv += ["--cpu", str(cpu)]
    if headers:
        argv += ["--headers", json.dumps(headers)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openloop --closed failed: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def run_wrk_closed(
    url: str, connections: int, seconds: float, cpu: int | None, headers: dict[str, str]
) -> dict[str, Any]:
    """wrk, one thread, ``connections`` connections with no pause: closed loop, as in the issue's figures."""
    raw = latency.wrk_raw(url, connections, seconds, cpu, headers, pause_ms=None)
    return {
        "generator": "wrk",
        "connections": connections,
        "seconds": seconds,
        "answered": raw["requests"],
        "unanswered": 0,
        "statuses": {},
        "errors": {"non-2xx": raw["non2xx"], "socket": raw["errors"]},
        "achieved_per_s": raw["requests"] / (raw["duration_us"] / 1e6),
        **{f"{k}_ms": raw[f"{k}_us"] / 1000 for k in ("p50", "p99", "max")},
    }


def run_open(url: str, rate: float, seconds: float, cpu: int | None, headers: dict[str, str]) -> dict[str, Any]:
    return latency.run_openloop(url, rate, seconds, cpu, headers)


# --- one measured point ----------------------------------------------------------------------------


def place(mode: str, target_pid: int, backends: Sequence[int]) -> int | None:
    """Apply ``mode``'s pinning; the generator's CPU (None: it floats)."""
    cpus = latency.pinning()
    everywhere = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
    if cpus is None or mode == "none":
        if everywhere:
            latency.pin(target_pid, everywhere)
        return None
    api_cpu, other_cpu = cpus
    latency.pin(target_pid, {api_cpu})
    if mode == "apart":
        for pid in backends:
            latency.pin(pid, {other_cpu})
    return other_cpu


def unplace(target_pid: int, backends: Sequence[int]) -> None:
    if not hasattr(os, "sched_getaffinity"):
        return
    everywhere = set(os.sched_getaffinity(0))
    for pid in (target_pid, *backends):
        latency.pin(pid, everywhere)


async def measure(
    runner: Callable[[str, Any, float, int | None, dict[str, str]], dict[str, Any]],
    load: Any,
    *,
    url: str,
    pid: int,
    seconds: float,
    pinning: str,
    database_url: str,
    redis_url: str,
    headers: dict[str, str],
) -> dict[str, Any]:
    """One generator run against one process, with every party's CPU per answered request."""
    backends = await latency.backend_pids(database_url)
    generator_cpu = place(pinning, pid, backends)
    before = (
        latency.cpu_seconds([pid]),
        latency.cpu_seconds(backends),
        await latency.redis_cpu(redis_url),
        latency.children_cpu(),
    )
    started = time.perf_counter()
    try:
        result = await asyncio.to_thread(runner, url, load, seconds, generator_cpu, headers)
    finally:
        unplace(pid, backends)
    wall = time.perf_counter() - started
    after = (
        latency.cpu_seconds([pid]),
        latency.cpu_seconds(backends),
        await latency.redis_cpu(redis_url),
        latency.children_cpu(),
    )
    used = [b - a for a, b in zip(before, after, strict=True)]
    answered = max(int(result["answered"]), 1)
    result.update(
        pinning=pinning,
        wall_seconds=wall,
        load_average=os.getloadavg()[0],
        api_cpu_share=used[0] / wall,
        api_cpu_ms_per_request=used[0] * 1000 / answered,
        postgres_cpu_ms_per_request=used[1] * 1000 / answered,
        redis_cpu_ms_per_request=used[2] * 1000 / answered,
        generator_cpu_share=used[3] / wall,
        generator_cpu_ms_per_request=used[3] * 1000 / answered,
    )
    return result


def describe(row: dict[str, Any]) -> str:
    load = f"c={row['connections']:<3}" if row["mode"] != "open" else f"@{row['rate']:>5g}/s"
    return (
        f"{row['mode']:>6} {row['generator']:>8} {load} {row['target']:>9}: {row['achieved_per_s']:7.0f}/s, "
        f"p50/p99 {row['p50_ms']:6.1f} / {row['p99_ms']:6.1f} ms; CPU ms/req: process "
        f"{row['api_cpu_ms_per_request']:.2f} ({row['api_cpu_share'] * 100:.0f}% of a core), "
        f"PostgreSQL {row['postgres_cpu_ms_per_request']:.2f}, Redis {row['redis_cpu_ms_per_request']:.2f}, "
        f"generator {row['generator_cpu_ms_per_request']:.2f}; load {row['load_average']:.1f}"
    )


# --- the comparison ----------------------------------------------------------------------------------


def available(generators: Sequence[str], log: Log) -> list[str]:
    """The closed-loop generators that can run here (wrk is skipped, and said so, when absent)."""
    found = [g for g in generators if g != "wrk" or shutil.which("wrk")]
    if "wrk" in generators and "wrk" not in found:
        log("wrk is not on PATH: closed loop measured with openloop --closed only (apt-get install wrk)")
    return found


async def compare(
    targets: dict[str, tuple[str, int]],
    *,
    database_url: str,
    redis_url: str,
    concurrencies: Sequence[int] = CONCURRENCIES,
    rates: Sequence[float] = RATES,
    seconds: float = 5,
    repeats: int = 2,
    pinning: str = "none",
    generators: Sequence[str] = ("closed", "wrk"),
    headers: dict[str, str] | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Every concurrency (closed loop) and every rate (open loop), each target in turn."""
    headers = headers or {}
    closed_generators = available(generators, log)
    runners = {"closed": run_closed, "wrk": run_wrk_closed}

    async def one(runner: Any, load: Any, url: str, pid: int, length: float) -> dict[str, Any]:
        return await measure(
            runner,
            load,
            url=url,
            pid=pid,
            seconds=length,
            pinning=pinning,
            database_url=database_url,
            redis_url=redis_url,
            headers=headers,
        )

    for name, (url, pid) in targets.items():  # open every pool connection before the backends are listed
        await one(run_closed, 50, url, pid, 1.0)
        log(f"warmed up {name}")
    rows: list[dict[str, Any]] = []

    async def point(mode: str, generator: str, load: Any, index: int) -> None:
        order = list(targets) if index % 2 == 0 else list(reversed(targets))  # interleaved, alternating
        for name in order:
            url, pid = targets[name]
            runner = run_open if mode == "open" else runners[generator]
            result = await one(runner, load, url, pid, seconds)
            row = {
                **result,
                "mode": mode,
                "generator": "openloop" if mode == "open" else generator,
                "target": name,
                "repeat": index,
                "connections": load if mode == "closed" else result.get("connections"),
                "rate": load if mode == "open" else None,
            }
            log(describe(row))
            rows.append(row)

    for connections in concurrencies:
        for generator in closed_generators:
            for index in range(repeats):
                await point("closed", generator, connections, index)
    for rate in rates:
        for index in range(repeats):
            await point("open", "openloop", rate, index)
    return {"pinning": pinning, "seconds": seconds, "repeats": repeats, "rows": rows, "summary": summarise(rows)}


def _pairs(
    rows: list[dict[str, Any]], mode: str, generator: str, key: str, load: Any, target: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(``target``'s row, the bare app's row) of each repeat of one point."""
    mine = [r for r in rows if r["mode"] == mode and r["generator"] == generator and r[key] == load]
    by_repeat: dict[int, dict[str, dict[str, Any]]] = {}
    for r in mine:
        by_repeat.setdefault(r["repeat"], {})[r["target"]] = r
    return [(p[target], p["bare"]) for p in by_repeat.values() if target in p and "bare" in p]


def _median(pairs: list[tuple[dict[str, Any], dict[str, Any]]], side: int, key: str) -> float:
    return float(statistics.median(pair[side][key] for pair in pairs))


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per target, concurrency and generator: medians of the target, of the bare app and of the pairs'
    ratios; per target and rate: the p99s. ``min_ratio`` and ``p99_at_1000_ms`` judge ``taskflow``."""
    closed: list[dict[str, Any]] = []
    opened: list[dict[str, Any]] = []
    targets = [t for t in dict.fromkeys(r["target"] for r in rows) if t != "bare"]
    for target in targets:
        for generator in sorted({r["generator"] for r in rows if r["mode"] == "closed"}):
            for connections in sorted({r["connections"] for r in rows if r["mode"] == "closed"}):
                pairs = _pairs(rows, "closed", generator, "connections", connections, target)
                if not pairs:
                    continue
                ratios = [t["achieved_per_s"] / b["achieved_per_s"] for t, b in pairs]
                closed.append(
                    {
                        "target": target,
                        "generator": generator,
                        "connections": connections,
                        "taskflow_per_s": _median(pairs, 0, "achieved_per_s"),
                        "bare_per_s": _median(pairs, 1, "achieved_per_s"),
                        "ratio": statistics.median(ratios),
                        "ratios": ratios,
                        "taskflow_p99_ms": _median(pairs, 0, "p99_ms"),
                        "bare_p99_ms": _median(pairs, 1, "p99_ms"),
                        "taskflow_cpu_ms": _median(pairs, 0, "api_cpu_ms_per_request"),
                        "bare_cpu_ms": _median(pairs, 1, "api_cpu_ms_per_request"),
                    }
                )
        for rate in sorted({r["rate"] for r in rows if r["mode"] == "open"}):
            pairs = _pairs(rows, "open", "openloop", "rate", rate, target)
            if not pairs:
                continue
            opened.append(
                {
                    "target": target,
                    "rate": rate,
                    "taskflow_per_s": _median(pairs, 0, "achieved_per_s"),
                    "bare_per_s": _median(pairs, 1, "achieved_per_s"),
                    "taskflow_p50_ms": _median(pairs, 0, "p50_ms"),
                    "bare_p50_ms": _median(pairs, 1, "p50_ms"),
                    "taskflow_p99_ms": _median(pairs, 0, "p99_ms"),
                    "bare_p99_ms": _median(pairs, 1, "p99_ms"),
                    "taskflow_cpu_ms": _median(pairs, 0, "api_cpu_ms_per_request"),
                    "bare_cpu_ms": _median(pairs, 1, "api_cpu_ms_per_request"),
                    "taskflow_failures": sum(
                        t["answered"] - t["statuses"].get("202", 0) + t["unanswered"] for t, _ in pairs
                    ),
                    "taskflow_cpu_share": _median(pairs, 0, "api_cpu_share"),
                    # Behind the asked rate with most of a core unused: the API was not given the CPU
                    # it needed (other work on the machine), so the point measures the machine.
                    "starved": _median(pairs, 0, "achieved_per_s") < STARVED_RATE * rate
                    and _median(pairs, 0, "api_cpu_share") < STARVED_SHARE,
                }
            )
    mine = [c["ratio"] for c in closed if c["target"] == "taskflow"]
    judged = next((o for o in opened if o["rate"] == JUDGED_RATE and o["target"] == "taskflow"), None)
    return {
        "closed": closed,
        "open": opened,
        "min_ratio": min(mine, default=float("nan")),
        "p99_at_1000_ms": judged["taskflow_p99_ms"] if judged else float("nan"),
    }


def table(summary: dict[str, Any]) -> str:
    """The front door's table: closed loop by concurrency, then open loop by rate."""

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    head = ("front door", "TaskFlow", "bare", "ratio / p99", "API CPU ms/req (TaskFlow, bare)", "target")
    rows: list[tuple[str, ...]] = [head]
    for c in summary["closed"]:
        rows.append(
            (
                f"{c['target']} closed {c['generator']} c={c['connections']}",
                f"{c['taskflow_per_s']:,.0f}/s p99 {c['taskflow_p99_ms']:.1f}",
                f"{c['bare_per_s']:,.0f}/s p99 {c['bare_p99_ms']:.1f}",
                f"{c['ratio']:.2f}x (" + ", ".join(f"{r:.2f}" for r in c["ratios"]) + ")",
                f"{c['taskflow_cpu_ms']:.2f}, {c['bare_cpu_ms']:.2f}",
                f"≥ 0.90x {mark(c['ratio'] >= TARGETS['ratio'])}" if c["target"] == "taskflow" else "",
            )
        )
    for o in summary["open"]:
        judged = o["rate"] == JUDGED_RATE and o["target"] == "taskflow"
        rows.append(
            (
                f"{o['target']} open @ {o['rate']:g}/s",
                f"{o['taskflow_per_s']:,.0f}/s p50 {o['taskflow_p50_ms']:.1f}",
                f"{o['bare_per_s']:,.0f}/s p50 {o['bare_p50_ms']:.1f}",
                f"p99 {o['taskflow_p99_ms']:.1f} vs {o['bare_p99_ms']:.1f} ms",
                f"{o['taskflow_cpu_ms']:.2f}, {o['bare_cpu_ms']:.2f}",
                (f"p99 ≤ 25 ms {mark(o['taskflow_p99_ms'] <= TARGETS['p99_ms'])}" if judged else "")
                + (f" (API starved: {o['taskflow_cpu_share'] * 100:.0f}% of a core)" if o["starved"] else ""),
            )
        )
    width = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


async def pinning_probe(
    url: str,
    pid: int,
    *,
    database_url: str,
    redis_url: str,
    rates: Sequence[float],
    pinnings: Sequence[str] = PINNINGS,
    seconds: float = 5,
    repeats: int = 2,
    headers: dict[str, str] | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Is the knee the harness? The open loop against one API at each rate under every pinning in turn
    (interleaved, alternating order), with every party's CPU per request; medians per pinning and rate."""
    rows: list[dict[str, Any]] = []
    for rate in rates:
        for index in range(repeats):
            for mode in pinnings if index % 2 == 0 else list(reversed(pinnings)):
                result = await measure(
                    run_open,
                    rate,
                    url=url,
                    pid=pid,
                    seconds=seconds,
                    pinning=mode,
                    database_url=database_url,
                    redis_url=redis_url,
                    headers=headers or {},
                )
                row = {**result, "mode": "open", "generator": "openloop", "target": mode, "repeat": index, "rate": rate}
                log(describe(row))
                rows.append(row)
    keys = ["achieved_per_s", "p50_ms", "p99_ms", "api_cpu_share", "api_cpu_ms_per_request"]
    keys += ["postgres_cpu_ms_per_request", "redis_cpu_ms_per_request", "generator_cpu_ms_per_request"]
    summary = [
        {
            "pinning": mode,
            "rate": rate,
            **{k: statistics.median(r[k] for r in rows if r["target"] == mode and r["rate"] == rate) for k in keys},
        }
        for rate in rates
        for mode in pinnings
    ]
    return {"rows": rows, "summary": summary}


def pinning_table(summary: list[dict[str, Any]]) -> str:
    head = ("pinning", "rate", "achieved", "p50 / p99 ms", "API core share", "CPU ms/req: API, PG, Redis, gen")
    rows: list[tuple[str, ...]] = [head]
    for s in summary:
        rows.append(
            (
                s["pinning"],
                f"{s['rate']:g}/s",
                f"{s['achieved_per_s']:.0f}/s",
                f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f}",
                f"{s['api_cpu_share'] * 100:.0f}%",
                f"{s['api_cpu_ms_per_request']:.2f}, {s['postgres_cpu_ms_per_request']:.2f}, "
                f"{s['redis_cpu_ms_per_request']:.2f}, {s['generator_cpu_ms_per_request']:.2f}",
            )
        )
    width = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


async def run(
    system: System,
    *,
    log: Log = print,
    ungrouped: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """The comparison against ``system``'s API (no worker should run) and a bare app started here;
    ``ungrouped``: also a second API storing each single submit on its own (TASKFLOW_SUBMIT_GROUP_MAX_SIZE=0),
    to see what grouping does in the same run."""
    assert system.api is not None
    resources = system.resources
    bare, bare_url = await asyncio.to_thread(start_bare, resources)
    targets = {"taskflow": (system.url, system.api.pid), "bare": (bare_url, bare.pid)}
    other = System(resources)
    try:
        if ungrouped:
            await asyncio.to_thread(other.start_api, TASKFLOW_SUBMIT_GROUP_MAX_SIZE="0")
            assert other.api is not None
            targets["ungrouped"] = (other.url, other.api.pid)
        return await compare(
            targets, database_url=resources.database_url, redis_url=redis_of(resources), log=log, **options
        )
    finally:
        other.stop_all()
        stop(bare)


def parse_ints(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


async def standalone(args: argparse.Namespace) -> dict[str, Any]:
    logs = RESULTS / "logs"
    async with provisioned("taskflow_frontdoor", logs, auth_enabled="false", log_level=args.log_level) as resources:
        system = System(resources)
        try:
            system.start_api()
            if args.probe_pinning:
                assert system.api is not None
                return await pinning_probe(
                    system.url,
                    system.api.pid,
                    database_url=resources.database_url,
                    redis_url=redis_of(resources),
                    rates=args.rates,
                    seconds=args.seconds,
                    repeats=args.repeats,
                    log=lambda line: print(line, flush=True),
                )
            return await run(
                system,
                concurrencies=args.concurrency,
                rates=args.rates,
                seconds=args.seconds,
                repeats=args.repeats,
                pinning=args.pinning,
                generators=tuple(args.generators.split(",")),
                ungrouped=args.ungrouped,
                log=lambda line: print(line, flush=True),
            )
        finally:
            system.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="frontdoor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=parse_ints, default=list(CONCURRENCIES))
    parser.add_argument("--rates", type=latency.parse_rates, default=list(RATES))
    parser.add_argument("--seconds", type=float, default=5, help="length of each point")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved pairs per point")
    parser.add_argument("--pinning", choices=PINNINGS, default="none")
    parser.add_argument("--generators", default="closed,wrk", help="closed-loop generators (wrk skipped if absent)")
    parser.add_argument(
        "--probe-pinning", action="store_true", help="instead: the open loop against the API under every pinning"
    )
    parser.add_argument("--ungrouped", action="store_true", help="also an API with TASKFLOW_SUBMIT_GROUP_MAX_SIZE=0")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    import uvloop

    report = uvloop.run(standalone(args))
    print(pinning_table(report["summary"]) if args.probe_pinning else table(report["summary"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"frontdoor-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    machine = {"cpus": os.cpu_count(), "pinning": latency.pinning(), "settings": vars(args)}
    out.write_bytes(orjson.dumps({"machine": machine, **report}, option=orjson.OPT_INDENT_2))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
