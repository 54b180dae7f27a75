"""The baseline: a plain arq worker moving no-op jobs, configured like TaskFlow's worker
(same Redis, concurrency, poll delay and uvloop), with no tracking at all.

    python -m loadtest.raw_arq   # env: RAW_ARQ_REDIS_URL, RAW_ARQ_QUEUE, RAW_ARQ_MAX_JOBS, RAW_ARQ_POLL_DELAY
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func

from taskcore.queue import RUN_TASK


async def noop(ctx: dict[str, Any], task_id: str) -> None:
    """What a no-op job does: nothing. It is enqueued exactly like a TaskFlow job (same name,
    same argument: a task id), so both workers read identical jobs."""


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = Worker(
        functions=[func(noop, name=RUN_TASK)],
        redis_settings=RedisSettings.from_dsn(os.environ["RAW_ARQ_REDIS_URL"]),
        queue_name=os.environ["RAW_ARQ_QUEUE"],
        max_jobs=int(os.environ["RAW_ARQ_MAX_JOBS"]),
        poll_delay=float(os.environ["RAW_ARQ_POLL_DELAY"]),
        keep_result=0,
        max_tries=1_000_000,
        allow_abort_jobs=True,  # TaskFlow's worker watches for aborts too
        log_results=False,
    )
    worker.run()


if __name__ == "__main__":
    main()
