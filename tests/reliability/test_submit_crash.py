"""The API SIGKILLed while grouped single submits are in flight: "202 means stored" holds for every
answer given, and a worker's reconciler runs every stored task, enqueued before the kill or not."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.e2e._helpers import wait_until
from tests.e2e.conftest import Stack
from tests.reliability._helpers import kill

pytestmark = pytest.mark.e2e

CLIENTS = 16
KILL_AFTER = 150  # answers; well inside the test key's submit burst
PER_CLIENT = 100  # bounded: the API dies long before


async def test_api_killed_mid_grouped_submits_loses_no_accepted_task(rel_stack: Stack, rel_db: asyncpg.Pool) -> None:
    api = rel_stack.api
    assert api is not None
    accepted: list[str] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)

    async with httpx.AsyncClient(base_url=rel_stack.url, headers=rel_stack.headers, timeout=5, limits=limits) as client:

        async def submitter(index: int) -> None:
            for n in range(PER_CLIENT):
                try:
                    answer = await client.post(
                        "/api/v1/tasks", json={"task_type": "test", "payload": {"c": index, "n": n}}
                    )
                except httpx.TransportError:
                    return  # the API is gone: what was in flight has no answer, and needs none
                assert answer.status_code == 202, answer.text
                accepted.append(answer.json()["id"])
                if len(accepted) >= KILL_AFTER and api.poll() is None:
                    kill(api)  # the other clients' submits are in flight, some inside a grouped INSERT

        await asyncio.gather(*(submitter(i) for i in range(CLIENTS)))

    assert api.poll() is not None
    assert len(accepted) >= KILL_AFTER
    stored = await rel_db.fetchval("SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[])", accepted)
    assert stored == len(accepted)  # every 202 was stored before it was sent
    rel_stack.start_worker()

    async def all_done() -> bool:
        left = await rel_db.fetchval("SELECT count(*) FROM tasks WHERE status <> 'succeeded'")
        return int(left) == 0

    await wait_until(all_done, within=90, what="every stored task succeeded")
