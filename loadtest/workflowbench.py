"""The workflow part of `make bench` (docs/workflows.md, docs/performance.md): a 1,000-step
fan-out/fan-in workflow — one root, 998 steps that each depend on it, one join that depends on
all 998 — submitted in one request to the system ``bench`` started, one worker running it.

Reported: the submit's own time, the time from the submit to the workflow ``succeeded`` (as the
client sees it, polling GET /api/v1/workflows/{id}), and steps/s over that time; also the
fan-in's wait (the join's ``started_at`` minus the last parent's ``finished_at``, from PostgreSQL).

Alone: ``python -m loadtest.workflowbench [--steps 1000] [--rounds 1]`` (its own database, API and worker).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from loadtest.procs import System, provisioned, stop

MAX_STEPS = 1000


def fan_out_fan_in(steps: int) -> list[dict[str, Any]]:
    """root -> (steps - 2) parallel steps -> join."""
    middle = [f"s{i}" for i in range(steps - 2)]
    return [
        {"ref": "root", "task_type": "test", "payload": {"message": "root"}},
        *({"ref": ref, "task_type": "test", "payload": {"message": ref}, "depends_on": ["root"]} for ref in middle),
        {"ref": "join", "task_type": "test", "payload": {"message": "join"}, "depends_on": middle},
    ]


async def one_run(url: str, database_url: str, steps: int, *, limit: float = 300) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        response = await client.post("/api/v1/workflows", json={"name": "bench-fan", "tasks": fan_out_fan_in(steps)})
        submitted = time.perf_counter() - started
        if response.status_code != 202:
            raise RuntimeError(f"workflow refused: {response.status_code} {response.text[:300]}")
        created = response.json()
        deadline = time.monotonic() + limit
        while True:
            body = (await client.get(f"/api/v1/workflows/{created['id']}")).json()
            if body["status"] != "running":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"workflow still running after {limit}s: {body['counts']}")
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - started
    if body["status"] != "succeeded":
        raise RuntimeError(f"workflow {body['status']}: {body['counts']}")
    conn = await asyncpg.connect(database_url)
    try:
        fan_in = await conn.fetchval(
            """SELECT EXTRACT(EPOCH FROM j.started_at - (SELECT max(p.finished_at) FROM tasks p
                                                        WHERE p.id = ANY(j.depends_on)))::float8
                 FROM tasks j WHERE j.workflow_id = $1::uuid AND j.step_ref = 'join'""",
            created["id"],
        )
    finally:
        await conn.close()
    return {
        "steps": steps,
        "submit_seconds": submitted,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "fan_in_wait_ms": fan_in * 1000,
    }


async def _worker_seen(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (await client.get("/api/v1/queue")).json()["workers"] >= 1:
                return
            await asyncio.sleep(0.2)
    raise RuntimeError("the worker did not announce itself")


async def run(system: System, *, steps: int = MAX_STEPS, log: Callable[[str], None]) -> dict[str, Any]:
    """One fan-out/fan-in run with a worker of its own (stopped afterwards)."""
    worker = system.start_worker()
    try:
        await _worker_seen(system.url)  # its start-up is not the workflow's time
        result = await one_run(system.url, system.resources.database_url, steps)
    finally:
        stop(worker)
        system.workers.remove(worker)
    log(
        f"{steps}-step fan-out/fan-in workflow: {result['seconds']:.2f} s from submit to succeeded "
        f"({result['steps_per_s']:,.0f} steps/s; submit {result['submit_seconds'] * 1000:.0f} ms, "
        f"fan-in wait {result['fan_in_wait_ms']:.1f} ms)"
    )
    return result


async def _alone(args: argparse.Namespace) -> list[dict[str, Any]]:
    logs = Path(__file__).resolve().parent / "results" / "logs"
    settings = {"auth_enabled": "false", "worker_concurrency": "100", "worker_poll_delay_seconds": "0.01"}
    results = []
    async with provisioned("taskflow_wfbench", logs, **settings) as resources:
        system = System(resources)
        try:
            system.start_api()
            for _ in range(args.rounds):
                results.append(await run(system, steps=args.steps, log=lambda line: print(line, flush=True)))
        finally:
            system.stop_all()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workflowbench", description=__doc__)
    parser.add_argument("--steps", type=int, default=MAX_STEPS, help="3 to 1,000")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    if not 3 <= args.steps <= MAX_STEPS:
        parser.error("--steps must be 3 to 1,000")
    asyncio.run(_alone(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
