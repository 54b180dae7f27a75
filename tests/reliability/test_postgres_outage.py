"""PostgreSQL goes away for a worker and an API (a proxy between them and PostgreSQL is cut, open
connections reset), then comes back.

- The worker pauses: its claims and result writes retry with backoff (tenacity) and go through
  when PostgreSQL returns; no result is lost and nothing runs twice when the outage is shorter
  than the lease.
- The API answers /ready 503 naming postgresql and submits 503 with Retry-After while it is
  gone, and recovers on its own.
- A worker cut off for longer than its lease is a *late worker*: another worker's reconciler
  takes the task back and runs it; when the late worker's write finally arrives it is rejected
  (guarded by status and attempt), and the newer result stands.
- A worker cut off from PostgreSQL but not from Redis picks no jobs (a claim that cannot reach
  PostgreSQL hands its job back): tasks submitted meanwhile run on a worker that can claim them.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from loadtest.procs import stop
from tests.e2e._helpers import TASKS, assert_problem, submit, wait_for_status, wait_until
from tests.e2e.conftest import Stack
from tests.reliability._helpers import executions, wait_running_on
from tests.reliability._proxy import CuttableProxy

pytestmark = pytest.mark.e2e


def via(proxy: CuttableProxy, url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"))


def proxy_for(stack: Stack) -> CuttableProxy:
    parts = urlsplit(stack.env["TASKFLOW_DATABASE_URL"])
    return CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)


async def test_a_postgres_outage_pauses_the_worker_and_loses_no_result(rel_stack: Stack, rel_db: asyncpg.Pool) -> None:
    stack = rel_stack
    with proxy_for(stack) as proxy:
        cut_off = via(proxy, stack.env["TASKFLOW_DATABASE_URL"])
        worker = stack.start_worker(
            TASKFLOW_DATABASE_URL=cut_off, TASKFLOW_LEASE_SECONDS="15", TASKFLOW_OUTAGE_TOLERANCE_SECONDS="60"
        )
        await asyncio.to_thread(stack.wait_for_workers, 1)
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
            with stack.extra_api("api-via-proxy", TASKFLOW_DATABASE_URL=cut_off) as degraded_url:
                async with httpx.AsyncClient(base_url=degraded_url, headers=stack.headers, timeout=15) as degraded:
                    assert (await degraded.get("/ready")).status_code == 200
                    running = [await submit(api, "rel.record", {"seconds": 2.5, "n": n}) for n in range(4)]
                    for task in running:
                        await wait_running_on(rel_db, task["id"])
                    proxy.cut()
                    cut_at = time.monotonic()

                    ready = await degraded.get("/ready")
                    body = assert_problem(ready, 503)
                    assert "postgresql" in body["detail"]
                    assert body["checks"]["redis"] == "ok"
                    refused = await degraded.post(TASKS, json={"task_type": "test", "payload": {}})
                    assert "postgresql" in assert_problem(refused, 503)["detail"]
                    assert int(refused.headers["Retry-After"]) > 0

                    # the other API still reaches PostgreSQL: tasks arrive while the worker is cut off
                    arriving = [await submit(api, "rel.record", {"seconds": 0.1, "n": 10 + n}) for n in range(3)]
                    await asyncio.sleep(max(0.0, 5 - (time.monotonic() - cut_at)))  # the handlers finish meanwhile
                    still = {(await api.get(f"{TASKS}/{t['id']}")).json()["status"] for t in running}
                    assert still == {"running"}, "a result was recorded while PostgreSQL was unreachable?"
                    proxy.restore()

                    async def ready_again() -> bool:
                        return (await degraded.get("/ready")).status_code == 200

                    await wait_until(ready_again, within=15, what="the API is ready again")
                    accepted = await degraded.post(TASKS, json={"task_type": "test", "payload": {"after": True}})
                    assert accepted.status_code == 202, accepted.text

            for task in [*running, *arriving]:
                done = await wait_for_status(api, task["id"], "succeeded", "failed", within=45)
                assert done["status"] == "succeeded", (done, stack.log("worker-0"))
                assert done["attempt"] == 1  # nothing ran twice
                assert done["result"]["n"] == task["payload"]["n"]
                assert len(await executions(rel_db, task["id"])) == 1
            assert (await wait_for_status(api, accepted.json()["id"], "succeeded", within=20))["attempt"] == 1
        assert worker.poll() is None, stack.log("worker-0")


async def test_a_late_workers_result_is_rejected_and_the_newer_one_stands(
    rel_stack: Stack, rel_db: asyncpg.Pool
) -> None:
    stack = rel_stack
    with proxy_for(stack) as proxy:
        late = stack.start_worker(
            TASKFLOW_DATABASE_URL=via(proxy, stack.env["TASKFLOW_DATABASE_URL"]),
            TASKFLOW_OUTAGE_TOLERANCE_SECONDS="60",
        )
        await asyncio.to_thread(stack.wait_for_workers, 1)
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
            created = await submit(api, "rel.record", {"first_seconds": 2, "seconds": 0.1}, max_retries=3)
            await wait_running_on(rel_db, created["id"])
            proxy.cut()  # the late worker keeps running the handler but can no longer renew its lease
            healthy = stack.start_worker()

            done = await wait_for_status(api, created["id"], "succeeded", "failed", within=30)
            assert done["status"] == "succeeded", done
            assert (done["attempt"], done["result"]["pid"]) == (2, healthy.pid)
            proxy.restore()

            async def rejected() -> bool:
                return "result discarded" in stack.log("worker-0")

            await wait_until(rejected, within=30, what="the late worker's write is refused", every=0.2)
            after = (await api.get(f"{TASKS}/{created['id']}")).json()
            assert (after["status"], after["attempt"], after["result"]) == ("succeeded", 2, done["result"])
            assert after["finished_at"] == done["finished_at"]
            runs = await executions(rel_db, created["id"])
            assert [(r["attempt"], r["pid"]) for r in runs] == [(1, late.pid), (2, healthy.pid)]
        assert late.poll() is None, stack.log("worker-0")


async def test_a_worker_cut_off_from_postgres_leaves_the_queue_to_one_that_is_not(
    rel_stack: Stack, rel_db: asyncpg.Pool
) -> None:
    stack = rel_stack
    with proxy_for(stack) as proxy:
        # A long outage tolerance: before the fix, a claim held its job for that long, retrying.
        cut_off = stack.start_worker(
            TASKFLOW_DATABASE_URL=via(proxy, stack.env["TASKFLOW_DATABASE_URL"]),
            TASKFLOW_OUTAGE_TOLERANCE_SECONDS="120",
        )
        await asyncio.to_thread(stack.wait_for_workers, 1)
        proxy.cut()  # Redis still answers it: it keeps polling the queue
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
            # Submitted while it is the only worker: it sees them first (before the fix it held each
            # one, retrying its claim, for the whole outage tolerance).
            tasks = [await submit(api, "rel.record", {"seconds": 0.05, "n": n}) for n in range(8)]
            await asyncio.sleep(1.5)
            healthy = stack.start_worker()
            for task in tasks:
                done = await wait_for_status(api, task["id"], "succeeded", "failed", within=30)
                assert done["status"] == "succeeded", (done, stack.log("worker-0"))
                assert (done["attempt"], done["result"]["pid"]) == (1, healthy.pid)
                assert len(await executions(rel_db, task["id"])) == 1
        assert "picking no jobs until it answers again" in stack.log("worker-0")
        # The jobs came back because the cut-off worker handed them back, not because the reconciler had to
        # free marks it left (before the fix: after a lease, one job at a time, and the worker took them again).
        reconciled = [json.loads(line) for line in stack.log("worker-1").splitlines() if '"reconciled"' in line]
        assert sum(entry["released"] for entry in reconciled) == 0, reconciled
        # Back in reach (and alone), the cut-off worker picks jobs again.
        stop(healthy)
        proxy.restore()

        async def picking_again() -> bool:
            return "postgresql reachable again" in stack.log("worker-0")

        await wait_until(picking_again, within=30, what="the cut-off worker sees PostgreSQL again")
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
            later = await submit(api, "rel.record", {"seconds": 0.05, "n": 99})
            done = await wait_for_status(api, later["id"], "succeeded", "failed", within=30)
            assert (done["status"], done["result"]["pid"]) == ("succeeded", cut_off.pid), stack.log("worker-0")
        assert cut_off.poll() is None, stack.log("worker-0")
