"""The flow-control part of `make bench` (docs/flow-control.md), on the system ``bench`` started
(``bench`` itself runs its end-to-end drain over two queues, one worker consuming both):

1. **under a key**: every task carries one limit key with ``max_running`` set, so each goes
   through admission (PostgreSQL) before Redis; tasks/s while the limit is saturated;
2. **fair share**: a big key floods one worker with short sleeps, then a small key submits a
   few; how long the small key's tasks take against the flood's duration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import orjson

from loadtest.procs import System, stop

SECOND_QUEUE = "bench-second"


async def submit(url: str, tasks: list[dict[str, Any]], *, clients: int = 2, size: int = 1000) -> list[str]:
    """Batch-submit ``tasks`` over ``clients`` connections; their ids in order."""
    bodies = [orjson.dumps({"tasks": tasks[start : start + size]}) for start in range(0, len(tasks), size)]
    ids: dict[int, list[str]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=clients)) as client:
        pending = iter(enumerate(bodies))

        async def sender() -> None:
            for index, body in pending:
                response = await client.post(
                    "/api/v1/tasks/batch", content=body, headers={"Content-Type": "application/json"}
                )
                if response.status_code != 202:
                    raise RuntimeError(f"batch refused: {response.status_code} {response.text[:300]}")
                ids[index] = [item["id"] for item in orjson.loads(response.content)["items"]]

        await asyncio.gather(*(sender() for _ in range(clients)))
    return [task_id for index in sorted(ids) for task_id in ids[index]]


async def watch_finished(database_url: str, ids: list[str], *, limit: float) -> dict[str, float]:
    """Poll PostgreSQL until every task of ``ids`` succeeded: throughput between 10 % and 90 % done."""
    conn = await asyncpg.connect(database_url)
    marks: dict[float, float] = {}
    started = time.perf_counter()
    try:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            done = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'succeeded'", ids
            )
            now = time.perf_counter() - started
            for fraction in (0.1, 0.9, 1.0):
                if fraction not in marks and done >= len(ids) * fraction:
                    marks[fraction] = now
            if done == len(ids):
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"{len(ids) - done} of {len(ids)} tasks not done after {limit}s")
    finally:
        await conn.close()
    return {"tasks": len(ids), "per_s": len(ids) * 0.8 / max(marks[0.9] - marks[0.1], 1e-9), "seconds": marks[1.0]}


async def _put_limit(url: str, key: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.put(f"/api/v1/limits/{key}", json=body)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"limit refused: {response.status_code} {response.text[:300]}")


async def _under_a_key(system: System, jobs: int, max_running: int) -> dict[str, Any]:
    await _put_limit(system.url, "bench-key", {"max_running": max_running})
    worker = system.start_worker()
    try:
        ids = await submit(
            system.url, [{"task_type": "test", "payload": {"n": i}, "limit_keys": ["bench-key"]} for i in range(jobs)]
        )
        result = await watch_finished(system.resources.database_url, ids, limit=60 + jobs / 20)
    finally:
        stop(worker)
        system.workers.remove(worker)
    return {**result, "max_running": max_running}


async def _fair_share(system: System, *, flood: int, small: int, seconds: float, concurrency: int) -> dict[str, Any]:
    def sleep_task(key: str) -> Callable[[int], dict[str, Any]]:
        return lambda i: {"task_type": "sleep", "payload": {"seconds": seconds}, "limit_keys": [key]}

    worker = system.start_worker(TASKFLOW_WORKER_CONCURRENCY=str(concurrency))
    try:
        big_ids = await submit(system.url, [sleep_task("tenant:big")(i) for i in range(flood)])
        await asyncio.sleep(seconds * 3)  # the flood is running
        small_started = time.perf_counter()
        small_ids = await submit(system.url, [sleep_task("tenant:small")(i) for i in range(small)])
        small_done = await watch_finished(system.resources.database_url, small_ids, limit=60 + flood * seconds)
        small_seconds = time.perf_counter() - small_started
        flood_done = await watch_finished(system.resources.database_url, big_ids, limit=60 + flood * seconds)
    finally:
        stop(worker)
        system.workers.remove(worker)
    return {
        "flood_tasks": flood,
        "small_tasks": small,
        "task_seconds": seconds,
        "concurrency": concurrency,
        "small_key_seconds": small_seconds,
        "small_key_in_task_durations": small_seconds / seconds,
        "flood_seconds": flood_done["seconds"],
        "small_poll_seconds": small_done["seconds"],
    }


async def run(system: System, *, jobs: int, log: Callable[[str], None]) -> dict[str, Any]:
    keyed = await _under_a_key(system, min(jobs, 10_000), max_running=50)
    log(f"under a key (max_running {keyed['max_running']}): {keyed['per_s']:,.0f} tasks/s")
    fair = await _fair_share(system, flood=1_000, small=5, seconds=0.1, concurrency=20)
    log(
        f"fair share: the small key's {fair['small_tasks']} tasks took {fair['small_key_seconds']:.2f} s "
        f"({fair['small_key_in_task_durations']:.1f} task durations) while a flood of {fair['flood_tasks']} "
        f"took {fair['flood_seconds']:.1f} s"
    )
    return {"under_a_key": keyed, "fair_share": fair}
