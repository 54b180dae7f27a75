"""The one change made to the OpenAPI document FastAPI generates, applied once by ``create_app``.

FastAPI documents what a route declares; what the app adds around routes is documented here:
the 401/403 of every operation that takes an API key (the security scheme itself comes from
``auth.BEARER``), and the 429 with ``Retry-After`` of every operation behind the submit rate limit.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from taskflow_api.auth import UNAUTHORIZED_ANSWERS
from taskflow_api.deps import limit_submits
from taskflow_api.ratelimit import RATE_LIMITED_ANSWER


def customise(app: FastAPI) -> None:
    build = app.openapi  # FastAPI's own: builds the document once, then returns it

    def openapi() -> dict[str, Any]:
        schema = build()
        _document_auth(schema)
        _document_rate_limit(app, schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_auth(schema: dict[str, Any]) -> None:
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and operation.get("security"):
                for code, answer in UNAUTHORIZED_ANSWERS.items():
                    operation.setdefault("responses", {}).setdefault(code, answer)


def _document_rate_limit(app: FastAPI, schema: dict[str, Any]) -> None:
    for route in app.routes:
        if not isinstance(route, APIRoute) or not any(d.call is limit_submits for d in route.dependant.dependencies):
            continue
        for method in route.methods or ():
            operation = schema["paths"][route.path].get(method.lower())
            if operation is not None:
                operation.setdefault("responses", {}).setdefault("429", RATE_LIMITED_ANSWER)
