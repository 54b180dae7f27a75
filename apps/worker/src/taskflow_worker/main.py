"""``taskflow-worker``: one arq worker process, configured only by TASKFLOW_* settings."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from taskcore.logging import configure_logging
from taskcore.settings import Settings
from taskflow_worker.app import create_worker
from taskflow_worker.preflight import check_dependencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskflow-worker", description="Run one TaskFlow worker process.")
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    # arq logs two lines per job; ours ("task succeeded", ...) carry the task's ids instead.
    logging.getLogger("arq.worker").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not available on Windows
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(check_dependencies(settings))  # says what is wrong; the worker starts anyway
    worker = create_worker(settings, burst=args.burst)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
