"""`make bench`: TaskFlow against raw arq, measured in the same run on the same machine.

1. raw arq moving no-op jobs (the baseline: same Redis, worker concurrency, poll delay, uvloop);
2. TaskFlow end to end: N `test` tasks submitted through the API (the batch endpoint), then
   processed by one worker with full PostgreSQL tracking until every task is terminal;
3. single-submit latency at fixed request rates (``loadtest/latency.py``): an open-loop
   generator pinned to one CPU, the API to the other, latency counted from each request's
   scheduled send time, at every rate of ``--rates`` (wrk as a cross-check when installed);
   no worker runs meanwhile, so the API's cost is what is measured;
4. queue wait (due → started) while the worker is idle;
5. batch submits alone (no worker): tasks/s, and CPU per 1,000 tasks of the API and PostgreSQL;
6. flow control (``loadtest/flowbench.py``): the drain over two queues, tasks under a
   ``max_running`` key, and a fair-share run (``--no-flow`` skips them);
7. the front door (``loadtest/frontdoor.py``): single submits against a bare FastAPI endpoint doing
   one INSERT and one enqueue, closed loop at 1-50 connections and open loop up to 1,000/s
   (``--no-frontdoor`` skips it);
8. a 1,000-step fan-out/fan-in workflow (``loadtest/workflowbench.py``): submit to succeeded,
   steps/s (``--no-workflow`` skips it);
9. a callback flood (``loadtest/callbackbench.py``): tasks with a callback_url to a local
   receiver; callbacks/s and task end → POST p50/p99 (``--callback-tasks 0`` skips it).

Throughput is measured between 10 % and 90 % of the drain (start-up and tail excluded), and
rounds alternate raw arq and TaskFlow so both see the same machine; the best round of each
counts. Prints the table (ratios first) and writes JSON and a PNG under loadtest/results/.
Every process binds 127.0.0.1 and uses a database, queue and Redis keys of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from loadtest import callbackbench, flowbench, frontdoor, latency, workflowbench
from loadtest.procs import REDIS_URL, Resources, System, provisioned, purge, stop
from taskcore.queue import Enqueue, TaskQueue, connect, queue_key

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"ratio": 0.9, "batch_per_s": 15_000, "p99_ms": 25.0, "idle_wait_p50_ms": 20.0}


@dataclass
class Drain:
    jobs: int
    throughput: float  # per second, between 10 % and 90 % done
    seconds: float  # first job finished → last job finished
    curve: list[tuple[float, int]]  # (seconds since the first finished, jobs done)
    # CPU milliseconds per job between 10 % and 90 %: the worker process, and the PostgreSQL
    # backends serving this run's database (what tracking costs the database server).
    worker_cpu_ms_per_job: float = 0.0
    postgres_cpu_ms_per_job: float = 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def watch_drain(
    redis: Any, queue_name: str | Sequence[str], jobs: int, *, limit: float, worker: int, database: str | None = None
) -> Drain:
    """Follow the queue's size (arq removes a job when it finishes; several queues: their sizes
    added up) until it is empty."""
    keys = [queue_name] if isinstance(queue_name, str) else list(queue_name)
    deadline = time.monotonic() + limit
    curve: list[tuple[float, int]] = []
    first = None
    cpu: dict[str, tuple[float, float]] = {}
    backends: list[int] = []
    while time.monotonic() < deadline:
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcard(key)
            remaining = sum(await pipe.execute())
        now = time.perf_counter()
        done = jobs - remaining
        if done > 0 and first is None:
            first = now
        if first is not None:
            curve.append((now - first, done))
        for mark in ("t10", "t90"):
            if mark not in cpu and done >= jobs * (0.1 if mark == "t10" else 0.9):
                if mark == "t10" and database:
                    backends = await latency.backend_pids(database)
                cpu[mark] = (latency.cpu_seconds([worker]), latency.cpu_seconds(backends))
        if remaining == 0:
            break
        await asyncio.sleep(0.005)
    else:
        raise RuntimeError(f"{queue_name}: {remaining} of {jobs} jobs left after {limit}s")
    t10 = next(t for t, d in curve if d >= jobs * 0.1)
    t90 = next(t for t, d in curve if d >= jobs * 0.9)
    middle = jobs * 0.8
    return Drain(
        jobs,
        middle / max(t90 - t10, 1e-9),
        curve[-1][0],
        curve,
        (cpu["t90"][0] - cpu["t10"][0]) * 1000 / middle,
        (cpu["t90"][1] - cpu["t10"][1]) * 1000 / middle,
    )


async def raw_arq_round(resources: Resources, jobs: int, concurrency: int, poll: float) -> Drain:
    queue_name = f"{resources.queue_name}:raw"
    redis = connect(REDIS_URL, queue_name=queue_name)
    ids = [uuid.uuid4() for _ in range(jobs)]
    try:
        queue = TaskQueue(redis)
        now = datetime.now(UTC)
        for start in range(0, jobs, 1000):
            await queue.enqueue_many([Enqueue(i, now) for i in ids[start : start + 1000]])
        proc = resources.spawn(
            [sys.executable, "-m", "loadtest.raw_arq"],
            "raw-arq",
            RAW_ARQ_REDIS_URL=REDIS_URL,
            RAW_ARQ_QUEUE=queue_name,
            RAW_ARQ_MAX_JOBS=str(concurrency),
            RAW_ARQ_POLL_DELAY=str(poll),
        )
        try:
            return await watch_drain(redis, queue_name, jobs, limit=60 + jobs / 50, worker=proc.pid)
        finally:
            stop(proc)
    finally:
        await purge(redis, queue_name, [str(i) for i in ids])
        await redis.aclose(close_connection_pool=True)


async def batch_submit(
    url: str, jobs: int, *, clients: int = 2, size: int = 1000, queues: Sequence[str] = ("default",)
) -> tuple[float, list[str]]:
    """Submit ``jobs`` tasks in batches over ``clients`` connections, spread over ``queues`` in turn
    (the default queue is named by omission, as most clients do); (tasks/s accepted, ids)."""

    def task(i: int) -> dict[str, Any]:
        queue = queues[i % len(queues)]
        return {"task_type": "test", "payload": {"n": i}, **({} if queue == "default" else {"queue": queue})}

    bodies = [
        orjson.dumps({"tasks": [task(i) for i in range(start, min(jobs, start + size))]})
        for start in range(0, jobs, size)
    ]
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=clients)) as client:
        await client.get("/health")
        next_body = iter(bodies)

        async def sender() -> None:
            for body in next_body:
                response = await client.post(
                    "/api/v1/tasks/batch", content=body, headers={"Content-Type": "application/json"}
                )
                if response.status_code != 202:
                    raise RuntimeError(f"batch refused: {response.status_code} {response.text[:300]}")
                ids.extend(item["id"] for item in orjson.loads(response.content)["items"])

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return jobs / elapsed, ids


async def batch_alone(system: System, jobs: int, *, clients: int) -> dict[str, Any]:
    """Batch submits with nothing else of the run going on: tasks/s accepted, and the CPU that
    the API process and the PostgreSQL backends spent per 1,000 tasks (steadier on a busy machine)."""
    assert system.api is not None
    backends = await latency.backend_pids(system.resources.database_url)
    before = (latency.cpu_seconds([system.api.pid]), latency.cpu_seconds(backends))
    rate, _ = await batch_submit(system.url, jobs, clients=clients)
    after = (latency.cpu_seconds([system.api.pid]), latency.cpu_seconds(backends))
    return {
        "tasks_per_s": rate,
        "tasks": jobs,
        "clients": clients,
        "api_cpu_ms_per_1000": (after[0] - before[0]) * 1e6 / jobs,
        "postgres_cpu_ms_per_1000": (after[1] - before[1]) * 1e6 / jobs,
        "load_average": os.getloadavg()[0],
    }


async def taskflow_round(system: System, jobs: int, *, queues: Sequence[str] = ("default",)) -> tuple[Drain, float]:
    """Submit through the API with no worker running (the tasks spread over ``queues`` in turn),
    then start one worker consuming them all with equal weights and time the drain."""
    resources = system.resources
    rate, ids = await batch_submit(system.url, jobs, queues=queues)
    redis = connect(REDIS_URL, queue_name=resources.queue_name)
    try:
        worker = system.start_worker(TASKFLOW_WORKER_QUEUES=",".join(f"{q}:1" for q in queues))
        try:
            drain = await watch_drain(
                redis,
                [queue_key(resources.queue_name, q) for q in queues],
                jobs,
                limit=60 + jobs / 50,
                worker=worker.pid,
                database=resources.database_url,
            )
        finally:
            stop(worker)
            system.workers.remove(worker)
    finally:
        await redis.aclose(close_connection_pool=True)
    conn = await asyncpg.connect(resources.database_url)
    try:
        succeeded = await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'succeeded'", ids
        )
    finally:
        await conn.close()
    if succeeded != jobs:
        raise RuntimeError(f"only {succeeded} of {jobs} tasks succeeded")
    return drain, rate


async def idle_queue_wait(system: System, samples: int) -> list[float]:
    """Single submits to an idle worker, one at a time; queue wait = started_at - run_at (ms)."""
    ids = []
    async with httpx.AsyncClient(base_url=system.url, timeout=10) as client:
        for i in range(samples):
            response = await client.post("/api/v1/tasks", json={"task_type": "test", "payload": {"idle": i}})
            ids.append(response.json()["id"])
            await asyncio.sleep(0.05)
    conn = await asyncpg.connect(system.resources.database_url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = await conn.fetch(
                "SELECT EXTRACT(EPOCH FROM started_at - run_at)::float8 * 1000 AS wait FROM tasks "
                "WHERE id = ANY($1::uuid[]) AND status = 'succeeded'",
                ids,
            )
            if len(rows) == samples:
                return [r["wait"] for r in rows]
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise RuntimeError("idle tasks did not all finish")


async def wait_for_worker(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (await client.get("/api/v1/queue")).json()["workers"] >= 1:
                return
            await asyncio.sleep(0.2)
    raise RuntimeError("the worker did not announce itself")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    # Ctrl-C or SIGTERM cancels the run, so that its processes, database and keys are removed.
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)
    report: dict[str, Any] = {"machine": machine(), "settings": vars(args).copy(), "rounds": []}
    logs = RESULTS / "logs"
    worker_settings = {
        "worker_concurrency": str(args.concurrency),
        "worker_poll_delay_seconds": str(args.poll),
        "log_level": args.log_level,
        "auth_enabled": "false",
        **callbackbench.SETTINGS,
    }
    async with provisioned("taskflow_bench", logs, **worker_settings) as resources:
        system = System(resources)
        try:
            system.start_api()
            for index in range(args.rounds):
                raw = await raw_arq_round(resources, args.jobs, args.concurrency, args.poll)
                flow, submit_rate = await taskflow_round(system, args.jobs)
                round_ = {"raw_arq": raw, "taskflow": flow, "batch_submit_per_s": submit_rate}
                report["rounds"].append(round_)
                print(
                    f"round {index + 1}: raw arq {raw.throughput:,.0f}/s, TaskFlow {flow.throughput:,.0f}/s "
                    f"({flow.throughput / raw.throughput:.2f}x), batch submit {submit_rate:,.0f}/s; CPU ms/job: "
                    f"arq worker {raw.worker_cpu_ms_per_job:.3f}, TaskFlow worker {flow.worker_cpu_ms_per_job:.3f} "
                    f"+ PostgreSQL {flow.postgres_cpu_ms_per_job:.3f}; load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            if args.flow:
                two, _ = await taskflow_round(system, args.jobs, queues=("default", flowbench.SECOND_QUEUE))
                print(f"two queues (one worker, weights 1:1): {two.throughput:,.0f} tasks/s", flush=True)
                flow_runs = await flowbench.run(system, jobs=args.jobs, log=lambda line: print(line, flush=True))
                report["flow"] = {"two_queues": {"tasks": two.jobs, "per_s": two.throughput}, **flow_runs}
            if args.workflow:
                report["workflow"] = await workflowbench.run(system, log=lambda line: print(line, flush=True))
            if args.callback_tasks:
                report["callbacks"] = await callbackbench.run(
                    system, tasks=args.callback_tasks, log=lambda line: print(line, flush=True)
                )
            worker = system.start_worker()
            await wait_for_worker(system.url)
            report["idle_wait_ms"] = await idle_queue_wait(system, args.idle_samples)
            # Batch submits alone and the latency sweep run with no worker: the API's cost is what is measured.
            stop(worker)
            system.workers.remove(worker)
            assert system.api is not None
            report["batch"] = await batch_alone(system, args.jobs, clients=args.batch_clients)
            print(
                f"batch submit alone: {report['batch']['tasks_per_s']:,.0f} tasks/s; CPU per 1,000 tasks: "
                f"API {report['batch']['api_cpu_ms_per_1000']:.0f} ms, "
                f"PostgreSQL {report['batch']['postgres_cpu_ms_per_1000']:.0f} ms; "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            report["latency"] = await latency.sweep(
                url=system.url,
                rates=sorted({*args.rates, args.rate}),
                seconds=args.seconds,
                api_pid=system.api.pid,
                database_url=resources.database_url,
                redis_url=REDIS_URL,
                generators=tuple(args.latency_generators.split(",")),
                log=lambda line: print(line, flush=True),
            )
            if args.frontdoor:
                rates = sorted({*args.rates, frontdoor.JUDGED_RATE})
                report["frontdoor"] = await frontdoor.run(
                    system, rates=rates, seconds=args.frontdoor_seconds, log=lambda line: print(line, flush=True)
                )
        finally:
            system.stop_all()
    return report


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    best_raw = max(r["raw_arq"].throughput for r in report["rounds"])
    best_flow = max(r["taskflow"].throughput for r in report["rounds"])
    fixed = next(
        r for r in report["latency"] if r["generator"] == "openloop" and r["rate"] == report["settings"]["rate"]
    )
    wait = report["idle_wait_ms"]
    return {
        "ratio": best_flow / best_raw,
        "raw_arq_per_s": best_raw,
        "taskflow_per_s": best_flow,
        "batch_per_s": max(report["batch"]["tasks_per_s"], *(r["batch_submit_per_s"] for r in report["rounds"])),
        "batch_api_cpu_ms_per_1000": report["batch"]["api_cpu_ms_per_1000"],
        "batch_postgres_cpu_ms_per_1000": report["batch"]["postgres_cpu_ms_per_1000"],
        "submit_p50_ms": fixed["p50_ms"],
        "submit_p95_ms": fixed["p95_ms"],
        "submit_p99_ms": fixed["p99_ms"],
        "submit_rate": fixed["rate"],
        "submit_achieved_per_s": fixed["achieved_per_s"],
        "submit_failures": fixed["answered"] - fixed["statuses"].get("202", 0) + fixed["unanswered"],
        "submit_api_cpu_ms": fixed["api_cpu_ms_per_request"],
        "submit_api_cpu_share": fixed["api_cpu_share"],
        "submit_generator_cpu_share": fixed["generator_cpu_share"],
        "idle_wait_p50_ms": percentile(wait, 50),
        "idle_wait_p99_ms": percentile(wait, 99),
        **_flow_summary(report.get("flow"), best_flow),
        **({"frontdoor": report["frontdoor"]["summary"]} if "frontdoor" in report else {}),
        **_workflow_summary(report.get("workflow")),
        **_callback_summary(report.get("callbacks")),
    }


def _callback_summary(flood: dict[str, Any] | None) -> dict[str, Any]:
    if flood is None:
        return {}
    return {
        "callback_tasks": flood["tasks"],
        "callbacks_per_s": flood["per_s"],
        "callback_p50_ms": flood["end_to_post_p50_ms"],
        "callback_p99_ms": flood["end_to_post_p99_ms"],
    }


def _flow_summary(flow: dict[str, Any] | None, single_queue_per_s: float) -> dict[str, Any]:
    if flow is None:
        return {}
    return {
        "two_queues_per_s": flow["two_queues"]["per_s"],
        "two_queues_ratio": flow["two_queues"]["per_s"] / single_queue_per_s,
        "under_a_key_per_s": flow["under_a_key"]["per_s"],
        "under_a_key_max_running": flow["under_a_key"]["max_running"],
        "fair_small_seconds": flow["fair_share"]["small_key_seconds"],
        "fair_small_durations": flow["fair_share"]["small_key_in_task_durations"],
        "fair_flood_seconds": flow["fair_share"]["flood_seconds"],
    }


def _workflow_summary(workflow: dict[str, Any] | None) -> dict[str, Any]:
    if workflow is None:
        return {}
    return {
        "workflow_steps": workflow["steps"],
        "workflow_seconds": workflow["seconds"],
        "workflow_steps_per_s": workflow["steps_per_s"],
        "workflow_fan_in_wait_ms": workflow["fan_in_wait_ms"],
    }


def table(summary: dict[str, Any], args: argparse.Namespace) -> str:
    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rows = [
        ("TaskFlow e2e / raw arq", f"{summary['ratio']:.2f}x", "≥ 0.90x", mark(summary["ratio"] >= TARGETS["ratio"])),
        ("raw arq no-op jobs", f"{summary['raw_arq_per_s']:,.0f}/s", "", ""),
        ("TaskFlow end to end", f"{summary['taskflow_per_s']:,.0f}/s", "", ""),
        (
            "batch submit",
            f"{summary['batch_per_s']:,.0f} tasks/s",
            "≥ 15,000/s",
            mark(summary["batch_per_s"] >= TARGETS["batch_per_s"]),
        ),
        (
            "  CPU per 1,000 batched tasks",
            f"API {summary['batch_api_cpu_ms_per_1000']:.0f} ms, "
            f"PostgreSQL {summary['batch_postgres_cpu_ms_per_1000']:.0f} ms",
            "",
            "",
        ),
        (
            f"single submit @ {summary['submit_rate']:g}/s (got {summary['submit_achieved_per_s']:.0f}/s) p50/p95/p99",
            f"{summary['submit_p50_ms']:.1f} / {summary['submit_p95_ms']:.1f} / {summary['submit_p99_ms']:.1f} ms",
            "p99 ≤ 25 ms",
            mark(summary["submit_p99_ms"] <= TARGETS["p99_ms"]),
        ),
        (
            "idle queue wait p50/p99",
            f"{summary['idle_wait_p50_ms']:.1f} / {summary['idle_wait_p99_ms']:.1f} ms",
            "p50 ≤ 20 ms",
            mark(summary["idle_wait_p50_ms"] <= TARGETS["idle_wait_p50_ms"]),
        ),
    ]
    if "two_queues_ratio" in summary:
        rows += [
            (
                "two queues / one queue (e2e)",
                f"{summary['two_queues_ratio']:.2f}x ({summary['two_queues_per_s']:,.0f}/s)",
                "≥ 0.90x",
                mark(summary["two_queues_ratio"] >= TARGETS["ratio"]),
            ),
            (
                f"under a key (max_running {summary['under_a_key_max_running']})",
                f"{summary['under_a_key_per_s']:,.0f}/s",
                "",
                "",
            ),
            (
                "fair share: small key's 5 tasks during a flood",
                f"{summary['fair_small_seconds']:.2f} s ({summary['fair_small_durations']:.1f} task durations; "
                f"flood {summary['fair_flood_seconds']:.1f} s)",
                "a few task durations",
                "",
            ),
        ]
    if "workflow_seconds" in summary:
        rows.append(
            (
                f"{summary['workflow_steps']:,}-step fan-out/fan-in workflow",
                f"{summary['workflow_seconds']:.2f} s submit to succeeded "
                f"({summary['workflow_steps_per_s']:,.0f} steps/s; "
                f"fan-in wait {summary['workflow_fan_in_wait_ms']:.0f} ms)",
                "",
                "",
            )
        )
    if "callbacks_per_s" in summary:
        rows.append(
            (
                f"callback flood ({summary['callback_tasks']} tasks, one worker)",
                f"{summary['callbacks_per_s']:,.0f} callbacks/s; task end → POST p50 "
                f"{summary['callback_p50_ms']:.0f} / p99 {summary['callback_p99_ms']:.0f} ms",
                "",
                "",
            )
        )
    rows.append(
        (
            "  API CPU per submit (that rate)",
            f"{summary['submit_api_cpu_ms']:.2f} ms ({summary['submit_api_cpu_share'] * 100:.0f}% of a core; "
            f"generator {summary['submit_generator_cpu_share'] * 100:.0f}%)",
            "",
            "",
        )
    )
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def latency_table(results: list[dict[str, Any]]) -> str:
    """Every rate of the sweep, each generator: what was asked, what was achieved, and at what CPU."""
    head = ("rate", "generator", "achieved", "p50 / p95 / p99 ms", "API CPU", "API ms/req", "generator CPU")
    rows = [head] + [
        (
            f"{r['rate']:g}/s",
            r["generator"],
            f"{r['achieved_per_s']:.0f}/s",
            f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} / {r['p99_ms']:.1f}",
            f"{r['api_cpu_share'] * 100:.0f}%",
            f"{r['api_cpu_ms_per_request']:.2f}",
            f"{r['generator_cpu_share'] * 100:.0f}%",
        )
        for r in results
    ]
    width = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(width[i]) for i, cell in enumerate(row)) for row in rows)


def chart(report: dict[str, Any], summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (drain_ax, lat_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, round_ in enumerate(report["rounds"]):
        for key, colour in (("raw_arq", "tab:grey"), ("taskflow", "tab:blue")):
            curve = round_[key].curve
            drain_ax.plot(
                [t for t, _ in curve],
                [d for _, d in curve],
                color=colour,
                alpha=0.5 + 0.5 * (index == 0),
                label=f"{'raw arq' if key == 'raw_arq' else 'TaskFlow'} (round {index + 1})",
            )
    drain_ax.set(
        xlabel="seconds since the first job finished",
        ylabel="jobs done",
        title=f"Drain: {summary['ratio']:.2f}x raw arq",
    )
    drain_ax.legend(fontsize=8)
    for generator, style in (("openloop", "-"), ("wrk", ":")):
        points = [r for r in report["latency"] if r["generator"] == generator]
        for key, colour in (("p50_ms", "tab:blue"), ("p99_ms", "tab:purple")):
            if points:
                lat_ax.plot(
                    [r["rate"] for r in points],
                    [r[key] for r in points],
                    style,
                    marker="o",
                    color=colour,
                    label=f"submit {key[:3]} ({generator})",
                )
    lat_ax.axhline(TARGETS["p99_ms"], color="tab:red", linestyle="--", linewidth=1, label="p99 target")
    lat_ax.axhline(summary["idle_wait_p50_ms"], color="tab:green", linestyle="-.", linewidth=1, label="idle wait p50")
    lat_ax.set(
        xlabel="submits per second asked",
        ylabel="ms (log)",
        title="Single-submit latency by rate (one API process)",
    )
    lat_ax.set_yscale("log")
    lat_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per throughput round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100, help="worker concurrency (arq max_jobs)")
    parser.add_argument("--poll", type=float, default=0.01, help="worker poll delay, seconds")
    parser.add_argument("--rate", type=float, default=300, help="single submits per second judged against the target")
    parser.add_argument(
        "--rates",
        type=latency.parse_rates,
        default=[100.0, 200.0, 300.0, 400.0],
        help="the latency sweep, e.g. 100,200",
    )
    parser.add_argument("--seconds", type=float, default=10, help="length of each fixed-rate step")
    parser.add_argument("--batch-clients", type=int, default=2, help="connections sending batches")
    parser.add_argument("--latency-generators", default="openloop,wrk", help="wrk is skipped when not installed")
    parser.add_argument("--idle-samples", type=int, default=100)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--flow", action=argparse.BooleanOptionalAction, default=True, help="the flow-control runs (two queues, ...)"
    )
    parser.add_argument("--frontdoor", action=argparse.BooleanOptionalAction, default=True, help="the front door")
    parser.add_argument("--frontdoor-seconds", type=float, default=5, help="length of each front-door point")
    parser.add_argument(
        "--workflow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the 1,000-step fan-out/fan-in workflow run",
    )
    parser.add_argument("--callback-tasks", type=int, default=2000, help="tasks of the callback flood (0 skips it)")
    args = parser.parse_args(argv)
    import uvloop

    report = uvloop.run(bench(args))
    summary = summarise(report)
    report["summary"] = summary
    print(latency_table(report["latency"]))
    print(table(summary, args))
    if "frontdoor" in summary:
        print(frontdoor.table(summary["frontdoor"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for round_ in report["rounds"]:
        for key in ("raw_arq", "taskflow"):
            round_[key] = asdict(round_[key])
    chart_report = {
        **report,
        "rounds": [{k: Drain(**v) if isinstance(v, dict) else v for k, v in r.items()} for r in report["rounds"]],
    }
    chart(chart_report, summary, RESULTS / f"bench-{stamp}.png")
    (RESULTS / f"bench-{stamp}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"written: {RESULTS / f'bench-{stamp}.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
