"""The seed's quick start, verbatim, against the real processes."""

from __future__ import annotations

import asyncio
import time

import httpx

pytestmark = __import__("pytest").mark.e2e


async def wait_for_status(api: httpx.AsyncClient, task_id: str, *statuses: str, within: float = 10) -> dict:
    deadline = time.monotonic() + within
    while True:
        body = (await api.get(f"/api/v1/tasks/{task_id}")).json()
        if body["status"] in statuses or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


async def test_quick_start(api: httpx.AsyncClient) -> None:
    created = await api.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": "Hello"}})
    assert created.status_code == 202
    task = created.json()
    assert created.headers["Location"] == f"/api/v1/tasks/{task['id']}"
    done = await wait_for_status(api, task["id"], "succeeded", within=1.5)
    assert done["status"] == "succeeded"
    assert done["result"]["echo"] == {"message": "Hello"}
