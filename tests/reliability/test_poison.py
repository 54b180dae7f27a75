"""Poison tasks on a real worker: a handler that hangs past its timeout, leaks an exception,
returns something that is not JSON, or even calls sys.exit() ends ``failed`` with a clear error,
and the worker process keeps running the next task."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import submit, wait_for_status
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

POISON: list[tuple[str, dict[str, Any], dict[str, Any], str, str]] = [
    ("sleep", {"seconds": 60}, {"timeout_seconds": 1}, "TaskTimeout", "timeout of 1s"),
    ("rel.raise", {}, {}, "LookupError", "poison: the handler leaked this"),
    ("fail", {"times": -1, "message": "always"}, {}, "DeliberateFailure", "always (attempt 2)"),
    ("rel.not_json", {}, {}, "ResultNotSerializable", "not JSON-serialisable"),
    ("rel.exit", {}, {}, "HandlerExit", "SystemExit(3)"),
    ("rel.exit_sync", {}, {}, "HandlerExit", "SystemExit(4)"),
]


async def test_poison_tasks_fail_clearly_and_the_worker_survives(rel_stack: Stack, rel_db: asyncpg.Pool) -> None:
    stack = rel_stack
    worker = stack.start_worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        created = [
            (await submit(api, task_type, payload, max_retries=1, **options), error_type, message)
            for task_type, payload, options, error_type, message in POISON
        ]
        for task, error_type, message in created:
            done = await wait_for_status(api, task["id"], "failed", "succeeded", within=30)
            assert done["status"] == "failed", (task["task_type"], done, stack.log("worker-0"))
            assert done["attempt"] == 2, done  # retried once, like any failure
            assert done["error"]["type"] == error_type, done["error"]
            assert message in done["error"]["message"], done["error"]
            assert done["error"]["traceback"], done["error"]
            assert done["result"] is None
        # the same worker process, still healthy, runs the next task
        assert worker.poll() is None, stack.log("worker-0")
        after = await submit(api, "test", {"message": "still here"})
        assert (await wait_for_status(api, after["id"], "succeeded", within=10))["result"]["echo"] == {
            "message": "still here"
        }
    assert worker.poll() is None
    assert await rel_db.fetchval("SELECT count(*) FROM tasks WHERE status = 'running'") == 0
