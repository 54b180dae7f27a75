"""Every error as application/problem+json (RFC 9457); one handler per kind of failure."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from taskcore.errors import (
    BatchNotFound,
    DependencyUnavailable,
    IdempotencyConflict,
    InvalidTransition,
    LimitNotFound,
    PayloadTooLarge,
    ScheduleNameTaken,
    ScheduleNotFound,
    TaskNotFound,
    TaskValidationError,
    WorkflowNotFound,
)
from taskflow_api.schemas import Problem

log = structlog.get_logger("taskflow.api")

PROBLEM_BASE = "urn:taskflow:problem:"
RETRY_AFTER_SECONDS = 5


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    body.update(extra or {})
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return Response(orjson.dumps(body), status_code=status, media_type="application/problem+json", headers=headers)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where = loc[0] if loc else "body"
        path = loc[1:] if where in {"body", "query", "path", "header"} else loc
        out.append(
            {"field": ".".join(path) or where, "in": where, "message": err.get("msg", ""), "type": err.get("type", "")}
        )
    return out


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    invalid = [err for err in exc.errors() if err.get("type") == "json_invalid"]
    if invalid:
        reason = invalid[0].get("ctx", {}).get("error", "")
        return problem(
            400,
            "malformed-json",
            "Malformed JSON",
            f"the request body is not valid JSON: {reason}".rstrip(": "),
            errors=[{"field": "body", "in": "body", "message": "not valid JSON", "type": "json_invalid"}],
            instance=request.url.path,
        )
    return problem(
        422,
        "validation-error",
        "Invalid request",
        "one or more fields are invalid",
        errors=_field_errors(exc),
        instance=request.url.path,
    )


async def _task_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TaskValidationError)
    if isinstance(exc, PayloadTooLarge):
        return problem(
            413, "payload-too-large", "Payload too large", str(exc), errors=exc.errors, instance=request.url.path
        )
    return problem(422, "validation-error", "Invalid request", str(exc), errors=exc.errors, instance=request.url.path)


async def _not_found(request: Request, exc: Exception) -> Response:
    return problem(404, "task-not-found", "Task not found", str(exc), instance=request.url.path)


async def _limit_not_found(request: Request, exc: Exception) -> Response:
    return problem(404, "limit-not-found", "Limit not found", str(exc), instance=request.url.path)


async def _workflow_not_found(request: Request, exc: Exception) -> Response:
    return problem(404, "workflow-not-found", "Workflow not found", str(exc), instance=request.url.path)


async def _schedule_not_found(request: Request, exc: Exception) -> Response:
    return problem(404, "schedule-not-found", "Schedule not found", str(exc), instance=request.url.path)


async def _batch_not_found(request: Request, exc: Exception) -> Response:
    return problem(404, "batch-not-found", "Batch not found", str(exc), instance=request.url.path)


async def _schedule_name_taken(request: Request, exc: Exception) -> Response:
    return problem(
        409,
        "schedule-name-taken",
        "Schedule name taken",
        str(exc),
        errors=[{"field": "name", "in": "body", "message": "is taken", "type": "unique"}],
        instance=request.url.path,
    )


async def _conflict(request: Request, exc: Exception) -> Response:
    slug = "idempotency-conflict" if isinstance(exc, IdempotencyConflict) else "invalid-transition"
    title = "Idempotency-Key reused" if isinstance(exc, IdempotencyConflict) else "Invalid state for this action"
    return problem(409, slug, title, str(exc), instance=request.url.path)


async def _unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DependencyUnavailable)
    # Not logged here: taskcore logs each cause once when it changes, the access log has each 503.
    return problem(
        503,
        "dependency-unavailable",
        "Service unavailable",
        f"{exc.dependency} is unavailable: {exc.why}",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        instance=request.url.path,
        extra={"dependency": exc.dependency, "reason": exc.reason or exc.why},
    )


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    return problem(
        exc.status_code,
        f"http-{exc.status_code}",
        detail,
        detail,
        headers=dict(exc.headers or {}),
        instance=request.url.path,
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", path=request.url.path)
    return problem(
        500,
        "internal-error",
        "Internal error",
        "an unexpected error occurred; it has been logged",
        instance=request.url.path,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(TaskValidationError, _task_validation)
    app.add_exception_handler(TaskNotFound, _not_found)
    app.add_exception_handler(LimitNotFound, _limit_not_found)
    app.add_exception_handler(WorkflowNotFound, _workflow_not_found)
    app.add_exception_handler(ScheduleNotFound, _schedule_not_found)
    app.add_exception_handler(ScheduleNameTaken, _schedule_name_taken)
    app.add_exception_handler(BatchNotFound, _batch_not_found)
    app.add_exception_handler(IdempotencyConflict, _conflict)
    app.add_exception_handler(InvalidTransition, _conflict)
    app.add_exception_handler(DependencyUnavailable, _unavailable)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries declaring ``codes`` as problem+json answers."""
    content = {"application/problem+json": {"schema": Problem.model_json_schema()}}
    return {code: {"description": "Problem details (RFC 9457)", "content": content} for code in codes}
