"""Exit codes scripts can rely on (documented in docs/cli.md)."""

from __future__ import annotations

from enum import IntEnum

from taskflow_client import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TaskflowError,
    TransportError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)


class Exit(IntEnum):
    OK = 0
    TASK_UNSUCCESSFUL = 1  # with --wait: the task ended failed or cancelled
    USAGE = 2  # bad options or arguments, or input the API refused (400, 413, 422)
    NOT_FOUND = 3  # no such task (404)
    AUTH = 4  # no or wrong API key (401), or missing scope (403)
    UNAVAILABLE = 5  # the API or its dependencies do not answer (503, 429, connection refused) after retries
    CONFLICT = 6  # the task's state does not allow it (409): cancel a finished task, retry a running one
    WAIT_TIMEOUT = 7  # with --wait and --wait-timeout: still not finished
    ERROR = 8  # anything else (an unexpected 5xx)


def exit_code_for(error: TaskflowError) -> Exit:
    if isinstance(error, BadRequest | ValidationFailed | PayloadTooLarge):
        return Exit.USAGE
    if isinstance(error, NotFound):
        return Exit.NOT_FOUND
    if isinstance(error, Unauthorized | Forbidden):
        return Exit.AUTH
    if isinstance(error, Unavailable | RateLimited | TransportError):
        return Exit.UNAVAILABLE
    if isinstance(error, Conflict):
        return Exit.CONFLICT
    if isinstance(error, APIError) and error.status < 500:
        return Exit.USAGE
    return Exit.ERROR
