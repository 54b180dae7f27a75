"""The callback flood of `make bench` (docs/callbacks.md): N `test` tasks with a callback_url to a
receiver on 127.0.0.1 (``loadtest/receiver.py``), submitted in batches with no worker running, then
one worker drains them and sends their callbacks. Reported: callbacks received per second (between
10 % and 90 % received), and the time from each task's end (its ``finished_at``) to the arrival of
its POST, p50/p99.

On its own, on a system of its own: ``python -m loadtest.callbackbench --tasks 2000``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from loadtest.flowbench import submit
from loadtest.procs import System, provisioned, stop
from loadtest.receiver import Receiver

# What the bench's processes need for callbacks to a local receiver (bench.py passes these to provisioned()).
SETTINGS = {"webhook_secret": "taskflow-bench-webhook-secret", "webhook_allow_private": "true"}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run(system: System, *, tasks: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Submit ``tasks`` tasks with a callback, drain them with one worker, time the callbacks."""
    async with Receiver() as receiver:
        hook = receiver.url("/flood")
        ids = await submit(system.url, [{"task_type": "test", "payload": {}, "callback_url": hook}] * tasks)
        started = time.time()
        worker = system.start_worker()
        try:
            await receiver.wait_for(len(ids), path="/flood", within=120 + tasks / 20)
        finally:
            stop(worker)
            system.workers.remove(worker)
    conn = await asyncpg.connect(system.resources.database_url)
    try:
        attempt_ms = [r["duration_ms"] for r in await conn.fetch("SELECT duration_ms FROM delivery_attempts")]
    finally:
        await conn.close()
    got = receiver.on("/flood")
    distinct = {r.headers.get("taskflow-delivery") for r in got}
    arrivals = sorted(r.at for r in got)
    lag_ms = []
    for r in got:
        finished = orjson.loads(r.body)["finished_at"]
        lag_ms.append((r.at - datetime.fromisoformat(finished).timestamp()) * 1000)
    first, last = arrivals[int(len(arrivals) * 0.1)], arrivals[max(0, int(len(arrivals) * 0.9) - 1)]
    middle = max(1, int(len(arrivals) * 0.9) - int(len(arrivals) * 0.1) - 1)
    result = {
        "tasks": tasks,
        "received": len(got),
        "distinct_deliveries": len(distinct),
        "per_s": middle / (last - first) if last > first else float("nan"),
        "seconds": arrivals[-1] - started,
        "end_to_post_p50_ms": _percentile(lag_ms, 50),
        "end_to_post_p99_ms": _percentile(lag_ms, 99),
        "attempt_p50_ms": _percentile(attempt_ms, 50),  # one POST, as the sender timed it (with its waits)
        "attempt_p99_ms": _percentile(attempt_ms, 99),
    }
    log(
        f"callback flood: {tasks} tasks, {result['per_s']:,.0f} callbacks/s, task end → POST p50 "
        f"{result['end_to_post_p50_ms']:.0f} ms / p99 {result['end_to_post_p99_ms']:.0f} ms "
        f"({result['received']} received, {result['distinct_deliveries']} distinct)"
    )
    return result


async def _alone(tasks: int) -> dict[str, Any]:
    logs = Path(__file__).resolve().parent / "results" / "logs"
    async with provisioned("taskflow_cbbench", logs, auth_enabled="false", **SETTINGS) as resources:
        system = System(resources)
        try:
            await asyncio.to_thread(system.start_api)
            return await run(system, tasks=tasks)
        finally:
            system.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callbackbench", description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args(argv)
    print(orjson.dumps(asyncio.run(_alone(args.tasks)), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
