"""The callback sender in-process against the real PostgreSQL and a receiver on 127.0.0.1: what each
answer does to a delivery, the SSRF check after DNS resolution, giving up, and the concurrency cap."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import httpx
import pytest

from loadtest.receiver import HOLD, Receiver
from taskcore.settings import Settings
from taskcore.store import TaskRepository
from taskcore.store.callbacks import DeliveryRepository
from taskflow_worker.callbacks import CallbackSender, Refused, resolve_target
from taskflow_worker.metrics import WorkerMetrics
from tests.conftest import make_settings
from tests.integration.conftest import stored


def sender(pool: asyncpg.Pool, settings: Settings, **overrides: object) -> CallbackSender:
    changed = make_settings(settings.database_url, settings.queue_name, **overrides)
    return CallbackSender(store=DeliveryRepository(pool), settings=changed, owner="t", metrics=WorkerMetrics())


async def ended(repo: TaskRepository, url: str) -> None:
    task = await stored(repo, callback_url=url)
    await repo.cancel(task.id)


async def one_attempt(s: CallbackSender, pool: asyncpg.Pool) -> dict[str, object]:
    (claimed,) = await s.store.claim(owner="t", limit=1, lease_seconds=s.lease_seconds)
    async with httpx.AsyncClient() as client:
        outcome = await s.attempt(client, claimed)
    assert await s.store.record(outcome, owner="t")
    return dict(await pool.fetchrow("SELECT * FROM deliveries WHERE id = $1", claimed.id))


@pytest.mark.parametrize(
    ("status", "final", "code"), [(200, "delivered", 200), (410, "failed", 410), (500, "pending", 500)]
)
async def test_each_answer_sets_the_delivery(
    repo: TaskRepository, pool: asyncpg.Pool, settings: Settings, status: int, final: str, code: int
) -> None:
    async with Receiver(script={"/x": [status]}) as receiver:
        await ended(repo, receiver.url("/x"))
        row = await one_attempt(sender(pool, settings, webhook_backoff_base_seconds=30), pool)
    assert row["status"] == final
    assert row["last_status_code"] == code
    if final == "pending":
        assert row["next_attempt_at"] > row["created_at"] + timedelta(seconds=14)  # ≥ half the base
        assert row["last_error"] == "HTTP 500"


async def test_a_host_resolving_to_loopback_is_refused_after_resolution(
    repo: TaskRepository, pool: asyncpg.Pool, settings: Settings
) -> None:
    async with Receiver() as receiver:
        await ended(repo, f"http://localhost:{receiver.port}/x")  # a name: accepted at submit
        row = await one_attempt(sender(pool, settings, webhook_allow_private=False), pool)
    assert receiver.received == []
    assert row["status"] == "failed"
    assert "localhost resolves to" in str(row["last_error"])
    assert "loopback" in str(row["last_error"])


async def test_an_unresolvable_host_is_retried(repo: TaskRepository, pool: asyncpg.Pool, settings: Settings) -> None:
    await ended(repo, "http://no-such-host.invalid/x")
    row = await one_attempt(sender(pool, settings, webhook_allow_private=False, webhook_timeout_seconds=3), pool)
    assert row["status"] == "pending"
    assert "does not resolve" in str(row["last_error"]) or "no answer" in str(row["last_error"])  # DNS may be slow


async def test_a_delivery_past_the_give_up_time_fails(
    repo: TaskRepository, pool: asyncpg.Pool, settings: Settings
) -> None:
    async with Receiver(script={"/x": [503]}) as receiver:
        await ended(repo, receiver.url("/x"))
        await pool.execute("UPDATE deliveries SET created_at = now() - interval '2 days'")
        row = await one_attempt(sender(pool, settings), pool)
    assert row["status"] == "failed"
    assert str(row["last_error"]).startswith("gave up after 1 attempts")
    assert "HTTP 503" in str(row["last_error"])


async def test_a_slow_receiver_is_a_timeout_retried(
    repo: TaskRepository, pool: asyncpg.Pool, settings: Settings
) -> None:
    async with Receiver(script={"/x": [HOLD]}, hold_seconds=5) as receiver:
        await ended(repo, receiver.url("/x"))
        row = await one_attempt(sender(pool, settings, webhook_timeout_seconds=0.3), pool)
    assert row["status"] == "pending"
    assert "no answer within 0.3 s" in str(row["last_error"])


async def test_the_loop_keeps_at_most_concurrency_in_flight_and_sends_them_all(
    repo: TaskRepository, pool: asyncpg.Pool, settings: Settings
) -> None:
    async with Receiver(script={"/x": [HOLD]}, hold_seconds=10) as receiver:
        for _ in range(6):
            await ended(repo, receiver.url("/x"))
        s = sender(pool, settings, webhook_concurrency=4, webhook_poll_interval_seconds=0.05)
        loop = asyncio.create_task(s.run())
        try:
            await receiver.wait_for(4, within=10)
            await asyncio.sleep(0.3)
            assert len(receiver.received) == 4  # the cap: the others wait for a slot
            receiver.release()
            await receiver.wait_for(6, within=10)

            async def all_delivered() -> bool:
                return await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'delivered'") == 6

            for _ in range(100):
                if await all_delivered():
                    break
                await asyncio.sleep(0.05)
            assert await all_delivered()
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)


async def test_the_target_is_the_checked_address_with_the_urls_host() -> None:
    target = await resolve_target("https://93.184.216.34:8443/h?x=1", allow_private=False)
    assert target.url == "https://93.184.216.34:8443/h?x=1"
    assert target.headers == {"Host": "93.184.216.34:8443"}
    v6 = await resolve_target("http://[2606:4700:4700::1111]/h", allow_private=False)
    assert v6.url == "http://[2606:4700:4700::1111]/h"
    with pytest.raises(Refused, match="private"):
        await resolve_target("http://10.0.0.7/h", allow_private=False)
    local = await resolve_target("http://localhost:1/h", allow_private=True)  # the guard off: as given
    assert local.url == "http://localhost:1/h"


async def test_a_stopping_sender_lets_its_posts_in_flight_finish(
    repo: TaskRepository, pool: asyncpg.Pool, settings: Settings
) -> None:
    async with Receiver(script={"/x": [HOLD]}, hold_seconds=10) as receiver:
        await ended(repo, receiver.url("/x"))
        loop = asyncio.create_task(sender(pool, settings, webhook_poll_interval_seconds=0.05).run())
        await receiver.wait_for(1, within=10)
        loop.cancel()  # the worker stops while the POST waits for its answer
        await asyncio.sleep(0.3)
        receiver.release()
        await asyncio.gather(loop, return_exceptions=True)
    assert await pool.fetchval("SELECT status FROM deliveries") == "delivered"


async def test_an_unforeseen_error_is_recorded_and_retried_not_looped(
    repo: TaskRepository, pool: asyncpg.Pool, settings: Settings
) -> None:
    await ended(repo, "http://127.0.0.1:9/x")
    await pool.execute("UPDATE deliveries SET task = '{}'::jsonb")  # a body that cannot be built
    row = await one_attempt(sender(pool, settings), pool)
    assert row["status"] == "pending"
    assert "KeyError" in str(row["last_error"])
    assert row["attempts"] == 1
