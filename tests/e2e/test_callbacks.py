"""Callbacks end to end: a real API and workers, a receiver on 127.0.0.1. The POST is the task JSON,
correctly signed; a 500 is retried until a 200; a 410 stops; and a worker SIGKILLed while its POST
is in flight loses no callback: another worker makes it once the lease ends."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import orjson
import pytest

from loadtest.receiver import HOLD, Receiver
from taskflow_client import verify_signature
from tests.e2e._helpers import submit, wait_for_status, wait_until
from tests.e2e.conftest import E2E_WEBHOOK_SECRET, Stack

pytestmark = pytest.mark.e2e

FAST_RETRIES = {"TASKFLOW_WEBHOOK_BACKOFF_BASE_SECONDS": "0.2", "TASKFLOW_WEBHOOK_TIMEOUT_SECONDS": "2"}


async def deliveries(api: httpx.AsyncClient, task_id: str) -> list[dict[str, object]]:
    answer = await api.get(f"/api/v1/tasks/{task_id}/deliveries")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, object]] = answer.json()["items"]
    return items


async def test_signed_post_retry_until_2xx_and_410_stops(isolated_stack: Stack) -> None:
    stack = isolated_stack
    stack.start_worker(**FAST_RETRIES)
    await asyncio.to_thread(stack.wait_for_workers, 1)
    script = {"/flaky": [500, 503, 200], "/gone": [410]}
    async with (
        Receiver(script=script) as receiver,
        httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api,
    ):
        ok = await submit(api, "test", {"message": "hi"}, callback_url=receiver.url("/ok"))
        (got,) = await receiver.wait_for(1, path="/ok", within=15)
        done = await wait_for_status(api, ok["id"], "succeeded")
        # The body is the task JSON of GET /api/v1/tasks/{id}, signed with the secret.
        assert orjson.loads(got.body) == done
        assert got.headers["content-type"] == "application/json"
        assert verify_signature(E2E_WEBHOOK_SECRET, got.headers["taskflow-signature"], got.body)
        assert not verify_signature("wrong", got.headers["taskflow-signature"], got.body)
        assert got.headers["taskflow-event"] == "task.succeeded"
        (delivery,) = await deliveries(api, ok["id"])
        assert got.headers["taskflow-delivery"] == delivery["id"]
        await wait_until(
            lambda: _status_is(api, ok["id"], "delivered"), within=10, what="the delivery recorded as delivered"
        )

        flaky = await submit(api, "fail", {"message": "boom"}, max_retries=0, callback_url=receiver.url("/flaky"))
        await receiver.wait_for(3, path="/flaky", within=20)
        await wait_until(lambda: _status_is(api, flaky["id"], "delivered"), within=10, what="flaky delivered")
        (delivery,) = await deliveries(api, flaky["id"])
        assert delivery["event"] == "task.failed"
        assert delivery["attempts"] == 3
        assert [a["status_code"] for a in delivery["history"]] == [500, 503, 200]  # type: ignore[attr-defined]
        assert len({r.headers["taskflow-delivery"] for r in receiver.on("/flaky")}) == 1  # the same delivery id

        gone = await submit(api, "test", {"message": "x"}, callback_url=receiver.url("/gone"))
        await receiver.wait_for(1, path="/gone", within=15)
        await wait_until(lambda: _status_is(api, gone["id"], "failed"), within=10, what="410 ends the delivery")
        await asyncio.sleep(1.0)  # well past a 0.2 s backoff: no second attempt
        assert len(receiver.on("/gone")) == 1
        (delivery,) = await deliveries(api, gone["id"])
        assert delivery["last_status_code"] == 410
        assert "410" in str(delivery["last_error"])

        plain = await submit(api, "test", {"message": "no hook"})
        await wait_for_status(api, plain["id"], "succeeded")
        assert await deliveries(api, plain["id"]) == []


async def _status_is(api: httpx.AsyncClient, task_id: str, status: str) -> bool:
    found = await deliveries(api, task_id)
    return bool(found) and found[-1]["status"] == status


async def test_a_worker_killed_mid_post_loses_no_callback(isolated_stack: Stack) -> None:
    stack = isolated_stack
    first = stack.start_worker(**FAST_RETRIES)
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with (
        Receiver(script={"/slow": [HOLD, 200]}) as receiver,
        httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api,
    ):
        task = await submit(api, "test", {"message": "hi"}, callback_url=receiver.url("/slow"))
        (held,) = await receiver.wait_for(1, path="/slow", within=15)  # the POST is in flight, unanswered
        first.send_signal(signal.SIGKILL)  # the worst moment: sent, not answered, not recorded
        await asyncio.to_thread(first.wait, 10)
        killed_at = time.monotonic()
        stack.start_worker(**FAST_RETRIES)
        (_, again) = await receiver.wait_for(2, path="/slow", within=30)
        waited = time.monotonic() - killed_at
        assert again.headers["taskflow-delivery"] == held.headers["taskflow-delivery"]
        assert again.body == held.body
        assert verify_signature(E2E_WEBHOOK_SECRET, again.headers["taskflow-signature"], again.body)
        await wait_until(lambda: _status_is(api, task["id"], "delivered"), within=10, what="delivered after the kill")
        (delivery,) = await deliveries(api, task["id"])
        assert delivery["attempts"] == 2  # the first attempt died with its worker (no outcome recorded)
        assert [a["attempt"] for a in delivery["history"]] == [2]  # type: ignore[attr-defined]
        assert waited < 15, f"redelivered {waited:.1f}s after the kill (lease 5 s)"


async def test_the_cli_submits_with_a_callback_url_and_shows_deliveries(stack: Stack) -> None:
    from tests.e2e.test_cli import as_json, run

    async with Receiver() as receiver:
        submitted = await asyncio.to_thread(
            run, stack, "--json", "submit", "test", "-p", '{"message": "cli"}', "--callback-url", receiver.url("/cli")
        )
        task = as_json(submitted)
        assert task["callback_url"] == receiver.url("/cli")
        (got,) = await receiver.wait_for(1, path="/cli", within=15)
        assert verify_signature(E2E_WEBHOOK_SECRET, got.headers["taskflow-signature"], got.body)

        async def delivered() -> bool:
            shown = as_json(await asyncio.to_thread(run, stack, "--json", "deliveries", task["id"]))
            return bool(shown) and shown[0]["status"] == "delivered"

        await wait_until(delivered, within=15, what="taskflow deliveries shows it delivered", every=0.5)
        table = await asyncio.to_thread(run, stack, "deliveries", task["id"])
        assert table.returncode == 0, table.stderr
        assert "task.succeeded" in table.stdout
        assert "delivered" in table.stdout
        missing = await asyncio.to_thread(run, stack, "deliveries", "00000000-0000-4000-8000-000000000000")
        assert missing.returncode != 0
