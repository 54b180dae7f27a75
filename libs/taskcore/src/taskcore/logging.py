"""structlog configuration: JSON lines in containers, readable console in development."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

from taskcore.redact import redact_secrets


def _drop_color_message(_logger: object, _name: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    """uvicorn attaches an ANSI-coloured copy of its message; the renderer does its own."""
    event.pop("color_message", None)
    return event


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(
            serializer=lambda obj, **_: orjson.dumps(obj, default=str).decode()
        )
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer()
    structlog.configure(
        # filter_by_level first: an event below the level (the worker's per-task debug line) is
        # dropped before the chain builds it, not after.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact_secrets, renderer],
    )
    # What no renderer here uses is not collected per record (the logging HOWTO's "Optimization"):
    # the caller's file and line (a walk up the stack), thread and process names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
