"""Profile one worker in process: N `test` tasks stored and enqueued, then a burst worker drains them.

    python -m loadtest.profile_worker --jobs 4000 [--raw] [--profile cprofile|pyinstrument|none]

Prints the process CPU time per job (steadier than wall-clock rates on a shared machine) and,
with a profiler, the top functions. ``--raw`` drains the same jobs with a plain arq worker
(loadtest/raw_arq.py's no-op job) for comparison. A database, queue and Redis keys of its own,
removed afterwards (loadtest/procs.py).
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from arq.connections import RedisSettings
from arq.worker import Worker, func

from loadtest.procs import REDIS_URL, provisioned, purge
from loadtest.raw_arq import noop
from taskcore.domain import NewTask
from taskcore.logging import configure_logging
from taskcore.queue import RUN_TASK, Enqueue, TaskQueue, connect
from taskcore.settings import Profile, Settings
from taskcore.store import TaskRepository, open_pool
from taskflow_worker.app import create_worker

RESULTS = Path(__file__).resolve().parent / "results"


async def fill(settings: Settings, jobs: int, *, store: bool) -> list[uuid.UUID]:
    """Store ``jobs`` tasks (unless ``store`` is False) and enqueue their jobs, 1,000 at a time."""
    ids = [uuid.uuid4() for _ in range(jobs)]
    pool = await open_pool(settings)
    redis = connect(settings.redis_url, queue_name=settings.queue_name)
    try:
        repo, queue = TaskRepository(pool), TaskQueue(redis)
        for start in range(0, jobs, 1000):
            chunk = ids[start : start + 1000]
            if store:
                await repo.insert_many(
                    [NewTask(i, "test", {"n": n}, 0, 3, 30, None) for n, i in enumerate(chunk, start)]
                )
            await queue.enqueue_many([Enqueue(i, datetime.now(UTC)) for i in chunk])
    finally:
        await pool.close()
        await redis.aclose(close_connection_pool=True)
    return ids


def raw_worker(settings: Settings, concurrency: int, poll: float) -> Worker:
    return Worker(
        functions=[func(noop, name=RUN_TASK)],
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        queue_name=settings.queue_name,
        max_jobs=concurrency,
        poll_delay=poll,
        keep_result=0,
        max_tries=1_000_000,
        allow_abort_jobs=True,
        log_results=False,
        burst=True,
        handle_signals=False,
    )


async def drain(worker: Worker, profile: str, out: Path) -> float:
    """Run the burst worker to the end; the process CPU seconds it took."""
    profiler: Any = None
    if profile == "cprofile":
        profiler = cProfile.Profile(time.process_time)  # CPU time: waits and preemption are not costs
    elif profile == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled", interval=0.0005)
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable() if profile == "cprofile" else profiler.start()
    try:
        await worker.main()
    finally:
        if profiler is not None:
            profiler.disable() if profile == "cprofile" else profiler.stop()
        used = time.process_time() - cpu
        await worker.close()
    if profile == "cprofile":
        profiler.dump_stats(out.with_suffix(".pstats"))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    elif profile == "pyinstrument":
        out.with_suffix(".html").write_text(profiler.output_html())
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    return used


async def run(args: argparse.Namespace) -> None:
    async with provisioned("taskflow_profile", RESULTS / "logs") as resources:
        settings = Settings(
            env=Profile.TEST,
            database_url=resources.database_url,
            redis_url=REDIS_URL,
            queue_name=resources.queue_name,
            worker_concurrency=args.concurrency,
            worker_poll_delay_seconds=args.poll,
            worker_metrics_port=0,
            log_level=args.log_level,
        )
        ids = await fill(settings, args.jobs, store=not args.raw)
        worker = raw_worker(settings, args.concurrency, args.poll) if args.raw else create_worker(settings, burst=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"profile-{'raw' if args.raw else 'taskflow'}-{time.strftime('%H%M%S')}"
        started = time.perf_counter()
        try:
            cpu = await drain(worker, args.profile, out)
        finally:
            redis = connect(REDIS_URL, queue_name=resources.queue_name)
            try:
                await purge(redis, resources.queue_name, [str(i) for i in ids])
            finally:
                await redis.aclose(close_connection_pool=True)
        wall = time.perf_counter() - started
        if not args.raw:
            conn = await asyncpg.connect(resources.database_url)
            try:
                succeeded = await conn.fetchval("SELECT count(*) FROM tasks WHERE status = 'succeeded'")
            finally:
                await conn.close()
            if succeeded != args.jobs:
                raise RuntimeError(f"only {succeeded} of {args.jobs} tasks succeeded")
        print(
            f"{'raw arq' if args.raw else 'TaskFlow'}: {args.jobs} jobs in {wall:.2f} s "
            f"({args.jobs / wall:,.0f}/s), CPU {cpu * 1000 / args.jobs:.3f} ms/job"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="profile_worker", description=__doc__)
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--poll", type=float, default=0.01)
    parser.add_argument("--raw", action="store_true", help="a plain arq worker with a no-op job")
    parser.add_argument("--profile", choices=["cprofile", "pyinstrument", "none"], default="none")
    parser.add_argument("--log-level", default="INFO", help="the worker's log level (the bench runs INFO)")
    args = parser.parse_args(argv)
    # As in a worker process: JSON lines (here to /dev/null, still formatted), arq's per-job lines off.
    configure_logging(args.log_level, "json")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    logging.getLogger("arq.worker").setLevel(logging.WARNING)
    import uvloop

    uvloop.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
