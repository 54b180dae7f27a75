"""Schemathesis against the live OpenAPI of a real `taskflow-api` process: every /api/v1 operation,
with a valid key, gets generated valid and invalid requests (hypothesis, bounded); none may answer
500 or break the schema the API publishes (status codes, content types, bodies, headers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.e2e.conftest import Stack, free_port, provision

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 15
# Which payloads are valid depends on the task type named in the same body (registered at run
# time); the published schema says "an object", so a schema-valid body may still be a correct 422.
# Every other check runs: no 5xx, documented status codes, content types, headers, response
# bodies, and invalid data rejected with a 4xx.
NOT_APPLICABLE = [schemathesis.checks.positive_data_acceptance]
# The list takes only optional query parameters, so a "negative" case is often nothing but unknown
# query parameters (ignored, as HTTP APIs do) or a dropped Authorization header (which the harness
# sends anyway; 401 without a key is tests/e2e/test_auth.py's). Its invalid values are still
# checked for rejection in tests/e2e/test_query.py; no-5xx and the response schema still apply.
ONLY_OPTIONAL_QUERY = {
    ("GET", "/api/v1/tasks"),
    ("GET", "/api/v1/workflows"),
    ("GET", "/api/v1/schedules"),
    ("GET", "/api/v1/load"),  # ?queue= repeated: any string is a queue name to it ("true" too)
}
OPERATIONS = [
    ("POST", "/api/v1/tasks"),
    ("POST", "/api/v1/tasks/batch"),
    ("GET", "/api/v1/tasks"),
    ("GET", "/api/v1/tasks/{task_id}"),
    ("GET", "/api/v1/tasks/{task_id}/events"),
    ("POST", "/api/v1/tasks/{task_id}/cancel"),
    ("GET", "/api/v1/tasks/{task_id}/history"),
    ("GET", "/api/v1/tasks/{task_id}/deliveries"),
    ("GET", "/api/v1/batches/{batch_id}"),
    ("POST", "/api/v1/tasks/{task_id}/retry"),
    ("GET", "/api/v1/task-types"),
    ("GET", "/api/v1/queue"),
    ("GET", "/api/v1/queues"),
    ("GET", "/api/v1/queues/{name}"),
    ("POST", "/api/v1/queues/{name}/pause"),
    ("POST", "/api/v1/queues/{name}/resume"),
    ("POST", "/api/v1/task-types/{name}/pause"),
    ("POST", "/api/v1/task-types/{name}/resume"),
    ("GET", "/api/v1/limits"),
    ("GET", "/api/v1/limits/{key}"),
    ("PUT", "/api/v1/limits/{key}"),
    ("DELETE", "/api/v1/limits/{key}"),
    ("GET", "/api/v1/load"),
    ("POST", "/api/v1/bulk"),
    ("GET", "/api/v1/bulk/{bulk_id}"),
    ("GET", "/api/v1/schedules"),
    ("POST", "/api/v1/schedules"),
    ("GET", "/api/v1/schedules/{schedule_id}"),
    ("PATCH", "/api/v1/schedules/{schedule_id}"),
    ("DELETE", "/api/v1/schedules/{schedule_id}"),
    ("POST", "/api/v1/schedules/{schedule_id}/pause"),
    ("POST", "/api/v1/schedules/{schedule_id}/resume"),
    ("POST", "/api/v1/schedules/{schedule_id}/trigger"),
    ("POST", "/api/v1/workflows"),
    ("GET", "/api/v1/workflows"),
    ("GET", "/api/v1/workflows/{workflow_id}"),
    ("POST", "/api/v1/workflows/{workflow_id}/cancel"),
]


@pytest.fixture(scope="module")
async def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """An API of its own, without a worker (so generated sleeps and CPU tasks never run)."""
    async with provision("taskflow_fuzz") as env:
        env["TASKFLOW_SUBMIT_RATE_PER_SECOND"] = "0"
        live = Stack(url=f"http://127.0.0.1:{free_port()}", env=env, logs=tmp_path_factory.mktemp("fuzz-logs"))
        try:
            await asyncio.to_thread(live.start_api)
            yield live
        finally:
            await asyncio.to_thread(live.stop)


@pytest.fixture(scope="module")
def live_schema(fuzz_stack: Stack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_stack.url}/openapi.json")


def test_the_fuzzed_operations_are_every_v1_operation(live_schema: schemathesis.BaseSchema) -> None:
    published = {
        (result.ok().method.upper(), result.ok().path)
        for result in live_schema.get_all_operations()
        if result.ok().path.startswith("/api/v1/")
    }
    assert published == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_live_api_honours_its_openapi(
    live_schema: schemathesis.BaseSchema, fuzz_stack: Stack, method: str, path: str, mode: GenerationMode
) -> None:
    operation = live_schema[path][method]
    excluded = list(NOT_APPLICABLE)
    if mode is GenerationMode.NEGATIVE and (method, path) in ONLY_OPTIONAL_QUERY:
        excluded.append(schemathesis.checks.negative_data_rejection)
    api_url = fuzz_stack.url

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=api_url, headers=fuzz_stack.headers, timeout=30, excluded_checks=excluded)

    check()
