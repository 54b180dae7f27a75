"""Per-key rate limit on submits: a token bucket in Redis, refilled continuously, one atomic Lua script.

Each key (the principal's name) has a bucket of ``submit_burst`` tokens refilled at
``submit_rate_per_second``; a submit takes one token or is answered 429 with ``Retry-After``.
The bucket lives in Redis so that every API process shares it. When Redis does not answer, the
limiter lets the submit through (fail open) and says so in the log: the task is stored in
PostgreSQL either way, and refusing work because a rate counter is unreachable would turn a
Redis outage into an API outage. With auth off there are no keys and no limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog
from fastapi import FastAPI, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.responses import Response

from taskcore.settings import Settings
from taskflow_api.auth import ANONYMOUS, Principal
from taskflow_api.problems import problem
from taskflow_api.schemas import Problem

log = structlog.get_logger("taskflow.api")

# KEYS[1] bucket; ARGV rate (tokens/s), burst, cost. Redis' own clock, so API hosts need not agree.
# A request is let through once min(cost, burst) tokens are there and takes all `cost` of them:
# a batch larger than the burst leaves the bucket in debt, so the key's average rate still holds.
# Returns {allowed (0/1), milliseconds until enough tokens are there}.
BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local need = math.min(cost, burst)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local allowed = 0
local wait = 0
if tokens >= need then
  tokens = tokens - cost
  allowed = 1
else
  wait = math.ceil((need - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {allowed, wait}
"""

OUTAGE_LOG_EVERY_SECONDS = 10.0
# After Redis failed to answer, submits skip the limiter this long instead of each waiting for a timeout.
OUTAGE_SKIP_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_seconds: int


class RateLimited(Exception):
    def __init__(self, principal: str, retry_after_seconds: int) -> None:
        super().__init__(f"rate limit for key '{principal}' exceeded")
        self.principal = principal
        self.retry_after_seconds = retry_after_seconds


class SubmitLimiter:
    """One bucket per principal under ``<queue name>:ratelimit:``."""

    def __init__(self, redis: Redis, *, prefix: str, rate: float, burst: int) -> None:
        self.prefix = prefix
        self.rate = rate
        self.burst = burst
        self._script = redis.register_script(BUCKET_SCRIPT)
        self._last_outage_log = -math.inf
        self._skip_until = -math.inf

    async def take(self, principal: str, cost: int = 1) -> Verdict:
        """Take ``cost`` tokens from the principal's bucket; fail open when Redis does not answer."""
        if time.monotonic() < self._skip_until:
            return Verdict(True, 0)
        try:
            allowed, wait_ms = await self._script(
                keys=[f"{self.prefix}{principal}"], args=[repr(self.rate), self.burst, cost]
            )
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            self._skip_until = now + OUTAGE_SKIP_SECONDS
            if now - self._last_outage_log >= OUTAGE_LOG_EVERY_SECONDS:
                self._last_outage_log = now
                log.warning("rate limit not applied: redis unavailable", error=type(exc).__name__)
            return Verdict(True, 0)
        return Verdict(bool(allowed), max(1, math.ceil(int(wait_ms) / 1000)))

    async def charge(self, principal: Principal, tasks: int) -> None:
        """Take one token per submitted task from the caller's bucket; RateLimited (429) when empty."""
        if principal is ANONYMOUS:
            return
        verdict = await self.take(principal.name, tasks)
        if not verdict.allowed:
            raise RateLimited(principal.name, verdict.retry_after_seconds)


async def _rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimited)
    return problem(
        429,
        "rate-limited",
        "Too many requests",
        f"{exc}; try again in {exc.retry_after_seconds} s",
        headers={"Retry-After": str(exc.retry_after_seconds)},
        instance=request.url.path,
    )


RATE_LIMITED_ANSWER = {
    "description": "The key's submit rate limit is exceeded; `Retry-After` says when to try again",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
}
"""What a rate-limited operation may answer (see ``openapi.py``)."""


def install(app: FastAPI) -> None:
    """Map RateLimited to 429."""
    app.add_exception_handler(RateLimited, _rate_limited)


def limiter_for(settings: Settings, redis: Redis) -> SubmitLimiter | None:
    """The limiter the settings ask for; None when there is no limit (none set, or auth off: no keys)."""
    if settings.submit_rate_per_second > 0 and settings.auth_required:
        return SubmitLimiter(
            redis,
            prefix=f"{settings.queue_name}:ratelimit:",
            rate=settings.submit_rate_per_second,
            burst=settings.submit_burst,
        )
    return None
