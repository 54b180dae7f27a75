"""The seed's quick start, verbatim, against the real processes."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e._helpers import wait_for_status

pytestmark = pytest.mark.e2e


async def test_quick_start(api: httpx.AsyncClient) -> None:
    created = await api.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": "Hello"}})
    assert created.status_code == 202
    task = created.json()
    assert created.headers["Location"] == f"/api/v1/tasks/{task['id']}"
    done = await wait_for_status(api, task["id"], "succeeded", within=1.5)
    assert done["result"]["echo"] == {"message": "Hello"}
