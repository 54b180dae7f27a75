"""The callback sender: a loop in every worker that claims due deliveries from the outbox
(taskcore/store/callbacks.py) and POSTs each task's JSON to its callback_url (docs/callbacks.md).

At most ``webhook_concurrency`` POSTs are in flight per worker; a delivery is claimed only when a
slot is free, under a lease longer than the whole attempt may take, so a worker killed mid-POST
leaves it to any other once the lease ends (at least once: receivers dedupe on TaskFlow-Delivery).
A 2xx answer delivers it; 410 Gone ends it (the receiver says stop); anything else is retried with
exponential backoff and jitter until ``webhook_give_up_seconds`` after the task ended.

SSRF: the host is resolved here and every address it resolves to is checked (taskcore.callbacks
.refused_address); the POST then goes to the checked address (the Host header and TLS server name
stay the URL's), so a DNS answer that changes between check and send is not used. Redirects are
not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import structlog

from taskcore.callbacks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    IPAddress,
    literal_address,
    refused_address,
    retry_delay,
    sign,
    task_document,
    task_from_row,
    webhook_secret,
)
from taskcore.settings import Settings
from taskcore.store.callbacks import Claimed, DeliveryRepository, Outcome
from taskflow_worker.metrics import WorkerMetrics

log = structlog.get_logger("taskflow.callbacks")

# A lease is twice the longest an attempt may take (webhook_timeout_seconds) plus this, so that a
# live worker records its outcome before anyone else may claim the delivery.
LEASE_MARGIN_SECONDS = 1.0
USER_AGENT = "TaskFlow-Callbacks/1"
MAX_ANSWER_BYTES = 64 * 1024  # of a receiver's answer body, read and dropped
SHUTDOWN_GRACE_SECONDS = 5.0  # how long a stopping worker lets its POSTs in flight finish


class Refused(Exception):
    """The URL may not be called: it resolves to a refused address, or does not resolve."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a POST goes: the URL with the checked address in place of the host name."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]


async def resolve_target(url: str, *, allow_private: bool) -> Target:
    """Resolve and check the host of ``url``; Refused naming why when it may not be called."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if allow_private:
        return Target(url, {}, {})
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:  # retried: a DNS outage must not end a delivery
            raise httpx.ConnectError(f"{host} does not resolve: {exc.strerror}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        if not addresses:
            raise httpx.ConnectError(f"{host} does not resolve")
    for address in addresses:
        why = refused_address(address)
        if why is not None:
            shown = host if literal is not None else f"{host} resolves to {address}, which"
            raise Refused(f"{shown} is refused: {why.split(' is ', 1)[1]} (TASKFLOW_WEBHOOK_ALLOW_PRIVATE is off)")
    chosen = addresses[0]
    netloc = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    if parts.port is not None:
        netloc += f":{parts.port}"
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
    return Target(urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}, extensions)


@dataclass(slots=True)
class CallbackSender:
    store: DeliveryRepository
    settings: Settings
    owner: str
    metrics: WorkerMetrics
    transport: httpx.AsyncBaseTransport | None = None  # tests only
    _in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    _claim_error: str | None = None  # the last claim's failure, logged once
    _freed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def lease_seconds(self) -> float:
        return 2 * self.settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS

    async def run(self) -> None:
        """Claim and send until cancelled."""
        # httpx logs every request at INFO: one line per callback is the sender's own (failures only).
        logging.getLogger("httpx").setLevel(logging.WARNING)
        settings = self.settings
        limits = httpx.Limits(max_connections=settings.webhook_concurrency, max_keepalive_connections=32)
        async with httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds,
            limits=limits,
            follow_redirects=False,
            transport=self.transport,
            headers={"User-Agent": USER_AGENT},
        ) as client:
            try:
                while True:
                    await self.step(client)
            finally:
                # Stopping (a deploy): the POSTs in flight get a moment to finish and be recorded; one cut
                # short is sent again by another worker after its lease (at least once).
                if self._in_flight:
                    await asyncio.wait(set(self._in_flight), timeout=min(SHUTDOWN_GRACE_SECONDS, self.lease_seconds))
                for task in self._in_flight:
                    task.cancel()
                await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def step(self, client: httpx.AsyncClient) -> int:
        """Claim what fits in the free slots and start sending it; then wait for work or a slot."""
        poll = self.settings.webhook_poll_interval_seconds
        self._freed.clear()  # before counting: a slot freed from here on wakes the wait below
        free = self.settings.webhook_concurrency - len(self._in_flight)
        claimed: list[Claimed] = []
        if free > 0:
            try:
                claimed = await self.store.claim(owner=self.owner, limit=free, lease_seconds=self.lease_seconds)
            except Exception as exc:  # noqa: BLE001 - PostgreSQL down: try again later, keep what is in flight
                error = f"{type(exc).__name__}: {exc}"
                if error != self._claim_error:  # once per change of cause, not once a second
                    log.warning("could not claim callbacks", error=error)
                self._claim_error = error
                await asyncio.sleep(max(poll, 1.0))
                return 0
            if self._claim_error is not None:
                log.info("claiming callbacks again")
                self._claim_error = None
        for delivery in claimed:
            task = asyncio.create_task(self._deliver(client, delivery))
            self._in_flight.add(task)
            task.add_done_callback(self._done)
        self.metrics.callbacks_in_flight.set(len(self._in_flight))
        if free > 0 and len(claimed) < free:
            await asyncio.sleep(poll)  # nothing more is due now
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), poll)
        return len(claimed)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.warning("callback delivery crashed", error=repr(task.exception()))

    async def _deliver(self, client: httpx.AsyncClient, delivery: Claimed) -> None:
        outcome = await self.attempt(client, delivery)
        try:
            recorded = await self.store.record(outcome, owner=self.owner)
        except Exception as exc:  # noqa: BLE001 - the lease ends and another attempt is made: at least once
            log.warning("could not record a callback attempt", delivery_id=str(delivery.id), error=str(exc))
            return
        if recorded:
            label = "retry" if outcome.status == "pending" else outcome.status
            self.metrics.callbacks.labels(label).inc()
            if outcome.status == "delivered":
                self.metrics.callback_latency.observe(
                    max(0.0, (datetime.now(UTC) - delivery.created_at).total_seconds())
                )
        (log.debug if outcome.status == "delivered" else log.info)(
            "callback attempt",
            delivery_id=str(delivery.id),
            task_id=str(delivery.task_id),
            attempt=delivery.attempt,
            status=outcome.status,
            status_code=outcome.status_code,
            error=outcome.error,
        )

    async def attempt(self, client: httpx.AsyncClient, delivery: Claimed) -> Outcome:
        """Make attempt ``delivery.attempt``; what it came to (not yet recorded)."""
        settings = self.settings
        started = time.monotonic()
        code: int | None = None
        final = False
        error: str | None
        try:
            async with asyncio.timeout(settings.webhook_timeout_seconds):
                target = await resolve_target(delivery.url, allow_private=settings.webhook_allow_private)
                body = orjson.dumps(task_document(task_from_row(delivery.task)))
                code = await self._post(client, target, body, delivery)
            if 200 <= code < 300:
                error = None
            elif code == 410:
                final, error = True, "410 Gone: the receiver asked for no more deliveries"
            else:
                error = f"HTTP {code}"
        except Refused as exc:
            final, error = True, f"refused: {exc}"
        except TimeoutError:
            error = f"no answer within {settings.webhook_timeout_seconds:g} s"
        except Exception as exc:  # noqa: BLE001 - httpx's errors, and anything unforeseen: retried, then given up
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration_ms = (time.monotonic() - started) * 1000
        if error is None:
            return Outcome(delivery.id, delivery.attempt, "delivered", code, None, duration_ms)
        if final:
            return Outcome(delivery.id, delivery.attempt, "failed", code, error, duration_ms)
        delay = retry_delay(delivery.attempt, settings.webhook_backoff_base_seconds)
        age = (datetime.now(UTC) - delivery.created_at).total_seconds()
        if age + delay > settings.webhook_give_up_seconds:
            gave_up = f"gave up after {delivery.attempt} attempts over {age:.0f} s; last: {error}"
            return Outcome(delivery.id, delivery.attempt, "failed", code, gave_up, duration_ms)
        return Outcome(delivery.id, delivery.attempt, "pending", code, error, duration_ms, delay)

    async def _post(self, client: httpx.AsyncClient, target: Target, body: bytes, delivery: Claimed) -> int:
        secret = webhook_secret(self.settings)
        if secret is None:  # the sender does not start without one (app.py); retried by a worker that has it
            raise httpx.RequestError("this worker has no TASKFLOW_WEBHOOK_SECRET to sign with")
        headers = {
            **target.headers,
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, body, int(time.time())),
            DELIVERY_HEADER: str(delivery.id),
            EVENT_HEADER: delivery.event,
        }
        request = client.build_request("POST", target.url, content=body, headers=headers, extensions=target.extensions)
        response = await client.send(request, stream=True)
        try:  # a short answer is read (the connection is then kept for the next POST); a long one is not
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > MAX_ANSWER_BYTES:
                    break
        finally:
            await response.aclose()
        return response.status_code
