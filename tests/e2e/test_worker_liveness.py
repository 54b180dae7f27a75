"""The worker's liveness (/healthz on its metrics port) follows its event loop: a blocked loop is reported
unhealthy within the threshold, and healthy again once the loop runs."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from loadtest.procs import free_port
from tests.e2e._helpers import submit, wait_for_status
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

MAX_AGE = 2.0  # seconds, the probe's threshold (?max_age=); the default is 15 s
BLOCK_SECONDS = 6.0
# The loop ticks every second and the check itself takes a poll: the verdict may lag the threshold by this much.
SLACK = 1.5


async def test_a_blocked_event_loop_is_reported_unhealthy_within_the_threshold(isolated_stack: Stack) -> None:
    stack = isolated_stack
    port = free_port()
    # A lease longer than the block, so that the task is not taken back while the test watches the probe.
    stack.start_worker(TASKFLOW_WORKER_METRICS_PORT=str(port), TASKFLOW_LEASE_SECONDS="30")
    await asyncio.to_thread(stack.wait_for_workers, 1)
    healthz = f"http://127.0.0.1:{port}/healthz?max_age={MAX_AGE}"
    async with (
        httpx.AsyncClient(timeout=5) as probe,
        httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api,
    ):
        answer = await probe.get(healthz)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "ok"
        assert answer.json()["loop_age_seconds"] <= MAX_AGE

        task = await submit(api, "e2e.block_loop", {"seconds": BLOCK_SECONDS}, max_retries=0)
        await wait_for_status(api, task["id"], "running", within=10)
        blocked_at = time.monotonic()  # the loop blocks at the latest now (the claim was written before the call)
        verdicts: list[tuple[float, int]] = []
        while time.monotonic() - blocked_at < MAX_AGE + SLACK + 1:
            answer = await probe.get(healthz)
            verdicts.append((round(time.monotonic() - blocked_at, 2), answer.status_code))
            if answer.status_code == 503:
                body = answer.json()
                assert body["status"] == "stalled"
                assert body["loop_age_seconds"] > MAX_AGE
                break
            await asyncio.sleep(0.2)
        unhealthy = [at for at, code in verdicts if code == 503]
        assert unhealthy, f"never reported unhealthy while its loop was blocked: {verdicts}"
        assert unhealthy[0] <= MAX_AGE + SLACK, verdicts

        # Metrics still answer (another thread): the probe is the loop's, not the process's.
        assert (await probe.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200

        await wait_for_status(api, task["id"], "succeeded", within=BLOCK_SECONDS + 10)
        deadline = time.monotonic() + MAX_AGE + SLACK
        while (answer := await probe.get(healthz)).status_code != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert answer.status_code == 200, f"still unhealthy after the loop came back: {answer.text}"
        # The default threshold is more forgiving than the test's.
        assert (await probe.get(f"http://127.0.0.1:{port}/healthz")).json()["max_age_seconds"] == 15.0
