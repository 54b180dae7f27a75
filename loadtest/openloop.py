"""An open-loop load generator: single submits at a fixed rate, whatever the answers' speed
(so a slow answer cannot hold back the next request and hide itself).

    python -m loadtest.openloop URL --rate 300 --seconds 15 [--warmup 2] [--header 'Authorization: Bearer …']

Prints one JSON object: latencies in ms from each request's scheduled time, and error counts.
Runs in a process of its own so that the client's CPU does not share a core with the caller.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import httpx
import orjson

BODY = orjson.dumps({"task_type": "test", "payload": {"message": "open loop"}})


async def run(url: str, *, rate: float, seconds: float, warmup: float, headers: dict[str, str]) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:

        async def one(scheduled: float, record: bool) -> None:
            try:
                response = await client.post(
                    "/api/v1/tasks", content=BODY, headers={"Content-Type": "application/json"}
                )
                key = str(response.status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            if record:
                latencies.append((time.perf_counter() - scheduled) * 1000)
                statuses[key] = statuses.get(key, 0) + 1

        total = int((warmup + seconds) * rate)
        start = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(scheduled, i / rate >= warmup))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.wait_for(asyncio.gather(*pending), timeout=60)
        elapsed = time.perf_counter() - start
    return {"rate": rate, "seconds": seconds, "sent": total, "elapsed": elapsed, "statuses": statuses, "latencies_ms": latencies}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openloop")
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in args.header)
    import uvloop

    result = uvloop.run(run(args.url, rate=args.rate, seconds=args.seconds, warmup=args.warmup, headers=headers))
    sys.stdout.buffer.write(orjson.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
