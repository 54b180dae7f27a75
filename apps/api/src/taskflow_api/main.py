"""``taskflow-api``: uvicorn serving the app, configured by TASKFLOW_* settings."""

from __future__ import annotations

import argparse
import sys

import uvicorn
from fastapi import FastAPI

from taskcore.logging import configure_logging
from taskcore.settings import Settings
from taskflow_api import keygen
from taskflow_api.app import create_app


def app_factory() -> FastAPI:
    """Used by uvicorn (also in each of its worker processes): settings are read once here."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keygen"]:
        return keygen.main(argv[1:])
    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="taskflow-api",
        description="Serve the TaskFlow REST API. `taskflow-api keygen --help`: mint an API key.",
    )
    parser.add_argument("--host", default=settings.api_host, help="default: TASKFLOW_API_HOST")
    parser.add_argument("--port", type=int, default=settings.api_port, help="default: TASKFLOW_API_PORT")
    parser.add_argument("--workers", type=int, default=settings.api_workers, help="default: TASKFLOW_API_WORKERS")
    args = parser.parse_args(argv)
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "taskflow_api.main:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # Named, not "auto": the C event loop and HTTP parser (uvicorn[standard]) are what the
        # performance figures assume, and a missing one should fail the start, not slow it.
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
