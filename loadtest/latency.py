"""Single-submit latency at fixed rates, measured so that the generator is not what is measured.

For each rate, the generator runs in a process of its own pinned to one CPU while the API
process is pinned to another (``sched_setaffinity``, where the OS has it and there are two
CPUs or more), and the CPU time each used is recorded with the percentiles, per request:

- ``openloop`` (``loadtest/openloop.py``, always available): open loop at fixed send times,
  latency from the scheduled time (queueing counted), tens of microseconds of CPU per request;
- ``wrk`` (Debian's C tool, used as a cross-check when it is on PATH): each of its
  connections sends, waits for the answer, then pauses (a Lua ``delay()``) so that together
  they approach the rate (a random pause, so that they do not send in bursts). That is closed
  loop — a stalled server gets fewer requests and the stall is not counted — so its tail is a
  lower bound; it is reported next to ``openloop``'s.

``python -m loadtest.latency`` runs a sweep against an API of its own (a database and queue of
its own, no worker: the submit path alone) and writes the steps to loadtest/results/; ``bench.py``
calls :func:`sweep` the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

SUBMIT_BODY = '{"task_type": "test", "payload": {"message": "rate"}}'
GENERATORS = ("openloop", "wrk")
WRK_CONNECTIONS = 32
# With a pause (mean: connections / rate), a random one keeps the connections from sending in lockstep bursts.
WRK_DELAY = """local pause = %d
function delay()
  return math.random(0, 2 * pause)
end"""


def pinning() -> tuple[int, int] | None:
    """(API CPU, generator CPU) when two CPUs can be told apart, else None."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of a process (sched_setaffinity on a pid moves only that thread)."""
    try:
        threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(tid, cpus)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (those still running)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def backend_pids(database_url: str) -> list[int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


async def redis_cpu(redis_url: str) -> float:
    client = Redis.from_url(redis_url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def run_openloop(url: str, rate: float, seconds: float, cpu: int | None, headers: dict[str, str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "loadtest.openloop", "--url", url, "--rate", f"{rate:g}", "--seconds", f"{seconds:g}"]
    if cpu is not None:
        argv += ["--cpu", str(cpu)]
    if headers:
        argv += ["--headers", json.dumps(headers)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openloop failed: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"
%(headers)s
%(delay)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRK-JSON {"requests": %%d, "duration_us": %%d, "non2xx": %%d, "errors": %%d, '
    .. '"p50_us": %%d, "p90_us": %%d, "p95_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def wrk_raw(
    url: str, connections: int, seconds: float, cpu: int | None, headers: dict[str, str], *, pause_ms: int | None
) -> dict[str, Any]:
    """One wrk run (one thread, ``connections`` connections; each pausing a random 0..2 x ``pause_ms``
    between requests, or closed loop with None): the numbers its ``done()`` prints."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError("wrk")
    lua_headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    delay = "" if pause_ms is None else WRK_DELAY % pause_ms
    script = WRK_SCRIPT % {"body": SUBMIT_BODY, "headers": lua_headers, "delay": delay}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", handle.name, f"{url}/api/v1/tasks"]
    taskset = shutil.which("taskset")
    if cpu is not None and taskset:
        argv = [taskset, "-c", str(cpu), *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        os.unlink(handle.name)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK-JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")
    raw: dict[str, Any] = json.loads(line.removeprefix("WRK-JSON "))
    return raw


def run_wrk(url: str, rate: float, seconds: float, cpu: int | None, headers: dict[str, str]) -> dict[str, Any]:
    """wrk, one thread, WRK_CONNECTIONS connections each pausing connections/rate between requests."""
    connections = min(WRK_CONNECTIONS, max(1, int(rate // 10)))
    raw = wrk_raw(url, connections, seconds, cpu, headers, pause_ms=round(connections / rate * 1000))
    duration = raw["duration_us"] / 1e6
    return {
        "generator": "wrk",
        "rate": rate,
        "seconds": seconds,
        "connections": connections,
        "requests": raw["requests"],
        "answered": raw["requests"],
        "errors": {"non-2xx": raw["non2xx"], "socket": raw["errors"]},
        "achieved_per_s": raw["requests"] / duration,
        **{f"{k}_ms": raw[f"{k}_us"] / 1000 for k in ("p50", "p90", "p95", "p99", "max")},
    }


RUNNERS = {"openloop": run_openloop, "wrk": run_wrk}


async def measure(
    generator: str,
    *,
    url: str,
    rate: float,
    seconds: float,
    api_pid: int,
    database_url: str,
    redis_url: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One generator at one rate, with the CPU each party used per request."""
    cpus = pinning()
    if cpus is not None:
        pin(api_pid, {cpus[0]})
    backends = await backend_pids(database_url)
    before = (cpu_seconds([api_pid]), cpu_seconds(backends), await redis_cpu(redis_url), children_cpu())
    started = time.perf_counter()
    runner = RUNNERS[generator]
    result = await asyncio.to_thread(runner, url, rate, seconds, cpus[1] if cpus else None, headers or {})
    wall = time.perf_counter() - started
    after = (cpu_seconds([api_pid]), cpu_seconds(backends), await redis_cpu(redis_url), children_cpu())
    if cpus is not None:
        pin(api_pid, set(os.sched_getaffinity(0)))
    used = [b - a for a, b in zip(before, after, strict=True)]
    sent = max(int(result["answered"]), 1)
    result.update(
        pinned={"api": cpus[0], "generator": cpus[1]} if cpus else None,
        wall_seconds=wall,
        load_average=os.getloadavg()[0],
        # CPU share of one core over the run, and milliseconds per answered request
        api_cpu_share=used[0] / wall,
        api_cpu_ms_per_request=used[0] * 1000 / sent,
        postgres_cpu_ms_per_request=used[1] * 1000 / sent,
        redis_cpu_ms_per_request=used[2] * 1000 / sent,
        generator_cpu_share=used[3] / wall,
        generator_cpu_ms_per_request=used[3] * 1000 / sent,
    )
    return result


async def sweep(
    *,
    url: str,
    rates: list[float],
    seconds: float,
    api_pid: int,
    database_url: str,
    redis_url: str,
    generators: tuple[str, ...] = GENERATORS,
    headers: dict[str, str] | None = None,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Every rate with every available generator (wrk is skipped, and said so, when absent)."""
    available = [g for g in generators if g != "wrk" or shutil.which("wrk")]
    if "wrk" in generators and "wrk" not in available:
        log("wrk is not on PATH: latency measured with the open-loop generator only (apt-get install wrk)")
    out = []
    for rate in rates:
        for generator in available:
            result = await measure(
                generator,
                url=url,
                rate=rate,
                seconds=seconds,
                api_pid=api_pid,
                database_url=database_url,
                redis_url=redis_url,
                headers=headers,
            )
            log(describe(result))
            out.append(result)
    return out


def describe(r: dict[str, Any]) -> str:
    return (
        f"{r['generator']:>8} @ {r['rate']:>5g}/s: got {r['achieved_per_s']:6.1f}/s, "
        f"p50/p95/p99 {r['p50_ms']:7.1f} / {r['p95_ms']:7.1f} / {r['p99_ms']:7.1f} ms; "
        f"API {r['api_cpu_share'] * 100:3.0f}% of a core ({r['api_cpu_ms_per_request']:.2f} ms/req), "
        f"generator {r['generator_cpu_share'] * 100:3.0f}% ({r['generator_cpu_ms_per_request']:.3f} ms/req), "
        f"PostgreSQL {r['postgres_cpu_ms_per_request']:.2f}, Redis {r['redis_cpu_ms_per_request']:.2f} ms/req; "
        f"load {r['load_average']:.1f}"
    )


def parse_rates(text: str) -> list[float]:
    rates = [float(part) for part in text.split(",") if part.strip()]
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("a comma-separated list of positive rates")
    return rates


async def standalone(args: argparse.Namespace) -> list[dict[str, Any]]:
    from loadtest.procs import REDIS_URL, System, provisioned

    logs = Path(__file__).resolve().parent / "results" / "logs"
    async with provisioned("taskflow_latency", logs, auth_enabled="false", log_level=args.log_level) as resources:
        system = System(resources)
        try:
            system.start_api()
            assert system.api is not None
            return await sweep(
                url=system.url,
                rates=args.rates,
                seconds=args.seconds,
                api_pid=system.api.pid,
                database_url=resources.database_url,
                redis_url=REDIS_URL,
                generators=tuple(args.generators.split(",")),
            )
        finally:
            system.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=parse_rates, default=parse_rates("100,200,300,400"))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--generators", default=",".join(GENERATORS))
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    import uvloop

    results = uvloop.run(standalone(args))
    out = Path(__file__).resolve().parent / "results" / f"latency-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "pinning": pinning()}, "steps": results}, indent=1))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
