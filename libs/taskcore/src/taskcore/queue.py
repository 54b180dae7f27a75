"""The arq adapter: the one module that knows arq's keys, its job layout, its Lua-visible data and
its Worker's internals. Everything else calls it (``TaskQueue`` for the queue side,
``build_worker`` for the worker side); tests/unit/test_arq_adapter.py fails, naming what
changed, when an arq internal relied on here changes (arq is pinned to its minor release).

Queues: one job per task, job id = task id, carrying only the id. Every call that touches a
queue takes its name (``queue=``; the client's default queue when omitted). arq keeps one sorted
set per queue; a worker consumes one or several, by weight (``TaskflowWorker``), and every step
that ends or re-scores a job uses the job's own queue.

Priority: arq runs due jobs in score order (the due time in ms). A task due now is
enqueued with its score moved back ``priority`` hours, so among tasks that are due,
higher priorities run first; a delayed task or a retry enters at its due time.

The worker side, ``TaskflowWorker``: arq's Worker with bulk picking and grouped finishing,
arq's keys and semantics unchanged.

arq picks each job on its own: WATCH the job's in-progress key, EXISTS, ZSCORE, MULTI/PSETEX/EXEC,
then one more transaction to read the job and count the try — five round trips per job, and the
same again on every poll for each job this worker is already running (they stay in the queue until
they finish). At a few thousand jobs a second that sequence, not the jobs, sets the pace.

``TaskflowWorker`` keeps arq's poll loop, abort handling, signals and shutdown, and replaces two
steps:

* **start_jobs** picks every job it has room for in one script call (``PICK_SCRIPT``): for each
  due job id (as arq's poll read them) that no worker has marked, it sets arq's in-progress key
  with arq's own lifetime, reads the job and counts the try (arq's retry key), atomically. Jobs
  this worker is running are not even asked about.
* **finishing**: a job that ended (success or error, its result not kept: TaskFlow's
  ``keep_result=0``) is removed from Redis together with the other jobs that ended meanwhile —
  one MULTI/EXEC deleting their in-progress, retry and job keys and their queue and abort entries,
  exactly what arq's ``finish_job`` does per job.

Each picked job runs in one task (the function awaited inside it, under the function's timeout),
registered as arq's ``job_tasks`` entry, so arq's abort cancels it. Anything off this common path —
a job whose data expired, an abort requested before it started, an unknown function or an
undecodable job, a cron job, a job past ``max_tries``, a ``Retry``, a cancellation by shutdown, a
result to keep, ``on_job_*`` hooks — goes through arq's own ``run_job``/``finish_job``.

The in-progress mark carries a token naming this call, so that a script call redis-py retries after
a lost reply returns the jobs the first execution marked instead of leaving them marked by nobody.
A lost connection that outlasts those retries leaves the jobs where they were for the next poll;
a mark left by a worker that died is cleared by the reconciler (stale in-progress marks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

import structlog
from arq.connections import ArqRedis, RedisSettings
from arq.constants import (
    abort_jobs_ss,
    health_check_key_suffix,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import deserialize_job_raw, serialize_job
from arq.typing import WorkerCoroutine
from arq.utils import ms_to_datetime, timestamp_ms
from arq.worker import Function, Retry, Worker, func
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, InvalidResponse, NoPermissionError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskcore.batching import Coalescer
from taskcore.errors import outage_reason, unavailable_on
from taskcore.flow import DEFAULT_QUEUE

RUN_TASK = "run_task"  # the single arq function every task runs through
# PostgreSQL governs retries; arq must never give up on a job by its own count.
ARQ_MAX_TRIES = 1_000_000
# run_task's arq timeout over the longest task timeout: the runner enforces the task's own.
RUN_TASK_TIMEOUT_EXTRA = timedelta(seconds=60)
# arq marks a job in progress for its longest function timeout + this (Worker.in_progress_timeout_s).
ARQ_IN_PROGRESS_EXTRA = timedelta(seconds=10)
PRIORITY_STEP = timedelta(hours=1)
# arq's job key must outlive the time a job may wait in the queue.
JOB_EXPIRY_EXTRA = timedelta(days=2)
_PRIORITY_STEP_MS = int(PRIORITY_STEP.total_seconds() * 1000)
_JOB_EXPIRY_EXTRA_MS = int(JOB_EXPIRY_EXTRA.total_seconds() * 1000)


def job_id(task_id: UUID) -> str:
    return str(task_id)


# arq's enqueue_job for many jobs in one command (arq's own takes three round trips per job:
# WATCH, EXISTS, MULTI/EXEC): each job is added unless a job or result with its id exists.
# KEYS: the queue; ARGV: job key prefix, result key prefix, then per job: id, expiry (ms),
# score (ms), serialised job. Returns 1 (added) or 0 (already there) per job.
_ENQUEUE_SCRIPT = """
local added = {}
for i = 3, #ARGV, 4 do
  local id = ARGV[i]
  local job_key = ARGV[1] .. id
  if redis.call('exists', job_key, ARGV[2] .. id) > 0 then
    added[#added + 1] = 0
  else
    redis.call('psetex', job_key, ARGV[i + 1], ARGV[i + 3])
    redis.call('zadd', KEYS[1], ARGV[i + 2], id)
    added[#added + 1] = 1
  end
end
return added
"""
ENQUEUE_CHUNK = 1000

# Which of many jobs exist, in one command (a pipeline of EXISTS costs the client per key).
# ARGV: job key prefix, then job ids. Returns 1 or 0 per id.
_EXISTS_SCRIPT = """
local found = {}
for i = 2, #ARGV do found[#found + 1] = redis.call('exists', ARGV[1] .. ARGV[i]) end
return found
"""  # jobs per script call: bounded so that one call never blocks Redis for long


def queue_key(base: str, queue: str | None) -> str:
    """The Redis sorted set of a named queue: ``base`` itself for the default queue (as before queues
    had names), ``base:name`` for the others."""
    return base if queue is None or queue == DEFAULT_QUEUE else f"{base}:{queue}"


@dataclass(frozen=True, slots=True)
class Enqueue:
    """One job to add: the task's id, due time, priority and queue (by name)."""

    task_id: UUID
    run_at: datetime
    priority: int = 0
    queue: str = DEFAULT_QUEUE


def in_progress_mark_lifetime(max_timeout_seconds: float) -> timedelta:
    """How long arq's in-progress mark of a picked job lives (its age is read from its TTL)."""
    return timedelta(seconds=max_timeout_seconds) + RUN_TASK_TIMEOUT_EXTRA + ARQ_IN_PROGRESS_EXTRA


def connect(redis_url: str, *, queue_name: str, timeout: float = 2.0) -> ArqRedis:
    """An ArqRedis client; it connects lazily, so a Redis outage does not stop a process starting."""
    pool = ConnectionPool.from_url(
        redis_url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=30
    )
    return ArqRedis(connection_pool=pool, default_queue_name=queue_name)


# InvalidResponse: something answers at that address, not in Redis's protocol (a wrong port).
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, WatchError, OSError, InvalidResponse, NoPermissionError)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(reason, hint) for a Redis failure: a password Redis wants (NOAUTH), a wrong one (WRONGPASS) or an
    ACL user without the commands TaskFlow runs are settings to fix, the rest an outage."""
    if isinstance(exc, AuthenticationError):
        if "without any password configured" in str(exc) or "no password is set" in str(exc):
            return f"authentication failed: {exc}", "this Redis has no password: remove it from TASKFLOW_REDIS_URL"
        return f"authentication failed: {exc}", "set its password in TASKFLOW_REDIS_URL (':PASSWORD@' before the host)"
    if isinstance(exc, InvalidResponse):  # something answers there, not in Redis's protocol
        return f"not a Redis server: {exc}", "check the host and port in TASKFLOW_REDIS_URL"
    if isinstance(exc, NoPermissionError):
        return f"permission denied: {exc}", "give the Redis user of TASKFLOW_REDIS_URL the commands TaskFlow runs"
    return outage_reason(exc), ""


def _translate_errors() -> AbstractAsyncContextManager[None]:
    # redis-py reports a connection lost inside WATCH (arq's enqueue_job) as WatchError; arq itself
    # catches the WatchError of a real concurrent change, so one that reaches us means Redis went away.
    # AuthenticationError (NOAUTH, WRONGPASS) is a ConnectionError; describe_error tells it apart.
    return unavailable_on("redis", _UNAVAILABLE, describe_error)


class TaskQueue:
    """The task side of arq's queues. A ``queue`` is a queue's name (taskcore.flow); the default
    queue's sorted set is the client's ``default_queue_name`` and the others' derive from it."""

    def __init__(self, redis: ArqRedis, *, base: str | None = None) -> None:
        self.redis = redis
        # The default queue's key (a worker's arq client defaults to the first queue it consumes).
        self.queue_name: str = base or redis.default_queue_name
        self._enqueue_script = redis.register_script(_ENQUEUE_SCRIPT)
        self._exists_script = redis.register_script(_EXISTS_SCRIPT)

    async def ping(self) -> None:
        async with _translate_errors():
            await self.redis.ping()

    def key(self, queue: str | None) -> str:
        return queue_key(self.queue_name, queue)

    async def enqueue(self, task_id: UUID, *, run_at: datetime, priority: int = 0, queue: str = DEFAULT_QUEUE) -> bool:
        """Add the task's job; False when a job for it already exists (it will run anyway)."""
        return (await self.enqueue_many([Enqueue(task_id, run_at, priority, queue)]))[0]

    async def enqueue_many(self, jobs: Sequence[Enqueue]) -> list[bool]:
        """Add many jobs, a chunk of one queue per round trip; each answer as for ``enqueue``."""
        queues = {job.queue for job in jobs}
        if len(queues) <= 1:
            return await self._enqueue_into(self.key(next(iter(queues), None)), jobs)
        answers: dict[UUID, bool] = {}
        for name in queues:
            mine = [job for job in jobs if job.queue == name]
            answers.update(zip((j.task_id for j in mine), await self._enqueue_into(self.key(name), mine), strict=True))
        return [answers[job.task_id] for job in jobs]

    async def _enqueue_into(self, queue_key: str, jobs: Sequence[Enqueue]) -> list[bool]:
        added: list[bool] = []
        now_ms = timestamp_ms()
        serializer = self.redis.job_serializer
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            args: list[str | int | bytes] = [job_key_prefix, result_key_prefix]
            for job in jobs[start : start + ENQUEUE_CHUNK]:
                # In integer milliseconds (datetime arithmetic costs more than the rest for a batch).
                ahead_ms = int(job.run_at.timestamp() * 1000) - now_ms
                priority_ms = job.priority * _PRIORITY_STEP_MS
                if ahead_ms > 0:  # due later: enters at its due time, the next whole ms (never picked early,
                    # a rate-limited start included: the pick compares with arq's rounded clock)
                    ahead_ms += 2
                    due_ms, expires_ms = now_ms + ahead_ms, ahead_ms + priority_ms + _JOB_EXPIRY_EXTRA_MS
                else:  # due now: moved back by its priority
                    due_ms, expires_ms = now_ms - priority_ms, priority_ms + _JOB_EXPIRY_EXTRA_MS
                key = job_id(job.task_id)
                body = serialize_job(RUN_TASK, (key,), {}, None, now_ms, serializer=serializer)
                args += [key, expires_ms, due_ms, body]
            async with _translate_errors():
                flags = await self._enqueue_script(keys=[queue_key], args=args)
            added += [bool(n) for n in flags]
        return added

    async def remove(self, task_id: UUID, *, queue: str = DEFAULT_QUEUE) -> None:
        """Drop a waiting task's job (the claim guard protects the race with a worker)."""
        await self.remove_many([(task_id, queue)])

    async def remove_many(self, jobs: Sequence[tuple[UUID, str]]) -> None:
        """``remove`` for many (task id, queue) pairs in one transaction."""
        if not jobs:
            return
        async with _translate_errors(), self.redis.pipeline(transaction=True) as pipe:
            for task_id, queue in jobs:
                pipe.zrem(self.key(queue), job_id(task_id))
            pipe.delete(*(job_key_prefix + job_id(task_id) for task_id, _ in jobs))
            await pipe.execute()

    async def abort(self, task_id: UUID) -> None:
        """Ask the worker running the task to cancel it (arq abort)."""
        async with _translate_errors():
            await self.redis.zadd(abort_jobs_ss, {job_id(task_id): timestamp_ms()})

    async def requeue_stale(
        self, task_id: UUID, *, run_at: datetime, priority: int = 0, queue: str = DEFAULT_QUEUE
    ) -> None:
        """Re-offer a task whose worker died: its job may still sit in the queue marked in progress
        (arq would wait for the job timeout before retrying it), so clear that mark first."""
        async with _translate_errors():
            await self.redis.delete(in_progress_key_prefix + job_id(task_id))
        await self.enqueue(task_id, run_at=run_at, priority=priority, queue=queue)

    async def forget_abort(self, task_id: UUID) -> None:
        """Drop a leftover abort request, which would otherwise abort the task's next job before it starts."""
        async with _translate_errors():
            await self.redis.zrem(abort_jobs_ss, job_id(task_id))

    async def missing(self, task_ids: Sequence[UUID]) -> list[UUID]:
        """The tasks that have no arq job (lost with a Redis restart, or never enqueued)."""
        found: list[int] = []
        for start in range(0, len(task_ids), ENQUEUE_CHUNK):
            chunk = [job_id(t) for t in task_ids[start : start + ENQUEUE_CHUNK]]
            async with _translate_errors():
                found += await self._exists_script(args=[job_key_prefix, *chunk])
        return [task_id for task_id, exists in zip(task_ids, found, strict=True) if not exists]

    async def stale_in_progress(
        self, task_ids: Sequence[UUID], *, marked_before: timedelta, max_timeout_seconds: float
    ) -> list[UUID]:
        """The tasks whose job a worker marked in progress more than ``marked_before`` ago (the mark
        lives ``in_progress_mark_lifetime(max_timeout_seconds)``; its remaining TTL tells its age)."""
        if not task_ids:
            return []
        async with _translate_errors(), self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.pttl(in_progress_key_prefix + job_id(task_id))
            remaining = await pipe.execute()
        lifetime_ms = in_progress_mark_lifetime(max_timeout_seconds).total_seconds() * 1000
        limit_ms = marked_before.total_seconds() * 1000
        return [t for t, ms in zip(task_ids, remaining, strict=True) if ms > 0 and lifetime_ms - ms > limit_ms]

    async def clear_in_progress(self, task_ids: Sequence[UUID]) -> None:
        """Let any worker take these jobs again (the claim guard keeps a task from running twice)."""
        if task_ids:
            async with _translate_errors():
                await self.redis.delete(*(in_progress_key_prefix + job_id(t) for t in task_ids))

    async def purge(self, task_ids: Sequence[UUID], *, base: str | None = None) -> None:
        """Delete the queues under ``base`` (the default queue's key; this client's by default: that
        sorted set and every named queue's ``base:name``) and every arq key of these tasks, and
        nothing else: for a test or a bench that shares a Redis database with others."""
        name = base or self.queue_name
        ids = [job_id(t) for t in task_ids]
        async with _translate_errors():
            named = [key async for key in self.redis.scan_iter(match=f"{name}:*", count=1000)]
        async with _translate_errors(), self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(name, name + health_check_key_suffix, *named)
            for start in range(0, len(ids), ENQUEUE_CHUNK):
                chunk = ids[start : start + ENQUEUE_CHUNK]
                for prefix in (job_key_prefix, in_progress_key_prefix, result_key_prefix, retry_key_prefix):
                    pipe.delete(*(prefix + key for key in chunk))
                pipe.zrem(abort_jobs_ss, *chunk)
            await pipe.execute()

    async def close(self) -> None:
        await self.redis.aclose(close_connection_pool=True)


# -- the worker side ------------------------------------------------------------

log = structlog.get_logger("taskflow.worker")

LOST_CONNECTION = (WatchError, RedisConnectionError, RedisTimeoutError, OSError)
RETRY_KEY_SECONDS = 88_400  # arq's lifetime of a job's try counter
FINISH_BATCH = 500
# Job ids asked about per pick, per free slot: the jobs at the head of the queue may be running on
# other workers; asking about all the ids a poll read (up to 500) costs the client more than a
# second round trip in the rare case where that is not enough.
PICK_FACTOR = 2

# KEYS: the queue, arq's abort set. ARGV: now (ms), in-progress lifetime (ms), most jobs to pick, this
# call's token, then the candidate job ids in queue order. For each job picked, returns
# {id, score, job data or false, try}: false (data expired, or an abort waits) sends the job down
# arq's own run_job, which reads it again and deals with it.
PICK_SCRIPT = f"""
local picked = {{}}
local limit = tonumber(ARGV[3])
local now = tonumber(ARGV[1])
for i = 5, #ARGV do
  if #picked >= limit then break end
  local id = ARGV[i]
  local mark_key = '{in_progress_key_prefix}' .. id
  local mark = redis.call('get', mark_key)
  if mark == ARGV[4] then
    -- marked by this very call: redis-py retried it after losing the reply; answer the same
    local try = tonumber(redis.call('get', '{retry_key_prefix}' .. id) or '0')
    local data = redis.call('get', '{job_key_prefix}' .. id)
    if try == 0 or redis.call('zscore', KEYS[2], id) then data = false end
    picked[#picked + 1] = {{id, redis.call('zscore', KEYS[1], id) or '0', data, try}}
  elseif not mark then
    local score = redis.call('zscore', KEYS[1], id)
    if score and tonumber(score) <= now then
      redis.call('psetex', mark_key, ARGV[2], ARGV[4])
      local data = redis.call('get', '{job_key_prefix}' .. id)
      local try = 0
      if data and not redis.call('zscore', KEYS[2], id) then
        try = redis.call('incr', '{retry_key_prefix}' .. id)
        redis.call('expire', '{retry_key_prefix}' .. id, {RETRY_KEY_SECONDS})
      else
        data = false
      end
      picked[#picked + 1] = {{id, score, data, try}}
    end
  end
end
return picked
"""


def defer(seconds: float) -> Exception:
    """What a job raises to run again in ``seconds`` (the same job: id = task id)."""
    return Retry(defer=seconds)


def redis_settings(redis_url: str, *, timeout_seconds: float, outage_tolerance_seconds: float) -> RedisSettings:
    """arq's Redis connection, retrying each command with backoff so that the worker waits out
    a Redis restart (for about ``outage_tolerance_seconds``) instead of exiting."""
    tolerance = outage_tolerance_seconds
    return dataclasses.replace(
        RedisSettings.from_dsn(redis_url),
        conn_timeout=max(1, math.ceil(timeout_seconds)),
        conn_retries=max(1, math.ceil(tolerance)),
        retry_on_timeout=True,
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
        # Delays double from 0.1 s up to 2 s: about four retries for the first 3 s, then one per 2 s.
        retry=RedisRetry(ExponentialBackoff(cap=2.0, base=0.1), retries=4 + math.ceil(max(0.0, tolerance - 3) / 2)),
    )


ReadyToPick = Callable[[], Awaitable[bool]]
RunTask = Callable[[dict[str, Any], str], Awaitable[None]]  # (arq's ctx, unused; the task id)


async def _always_ready() -> bool:
    return True


class _BurstDone(Exception):
    """Every consumed queue is empty: a burst worker's poll loop ends (see TaskflowWorker.main)."""


def split_room(room: int, weights: Sequence[int], available: Sequence[int], credit: list[int]) -> list[int]:
    """How many of ``room`` free slots each queue gets: in proportion to its weight among the queues
    with due jobs (``available`` per queue), a queue with fewer due jobs than its share leaving the rest
    to the others. One slot at a time by smooth weighted round robin, ``credit`` carried from call to call,
    so that a worker freeing one slot at a time still serves queues 3:1 and not always the heaviest."""
    shares = [0] * len(weights)
    for index, count in enumerate(available):
        if not count:
            credit[index] = 0  # an idle queue banks no turns for later
    for _ in range(room):
        active = [i for i, count in enumerate(available) if shares[i] < count]
        if not active:
            break
        for i in active:
            credit[i] += weights[i]
        best = max(active, key=lambda i: credit[i])
        credit[best] -= sum(weights[i] for i in active)
        shares[best] += 1
    return shares


class TaskflowWorker(Worker):
    """arq's Worker picking from ``queues`` ((Redis key, weight) pairs; arq's ``queue_name`` alone by
    default); ``ready_to_pick`` is asked before each pick (no: the due jobs stay for other workers).

    One queue is arq's own poll (one read, then the picks). Several: one pipelined read of every queue,
    the free slots split by weight among those with due jobs (``split_room``), one pipelined pick per
    round. Each picked job remembers its queue, so every arq step that names "the" queue (finishing,
    a deferred retry's new score, a failed job) uses the job's own."""

    def __init__(
        self,
        *args: Any,
        ready_to_pick: ReadyToPick = _always_ready,
        queues: Sequence[tuple[str, int]] = (),
        **kwargs: Any,
    ) -> None:
        burst = bool(kwargs.get("burst", False))
        if len(queues) > 1:
            kwargs["burst"] = False  # arq's burst ends when its one queue is empty; ours checks them all
        super().__init__(*args, **kwargs)
        self._queues: tuple[tuple[str, int], ...] = tuple(queues) or ((self.queue_name, 1),)
        self._multi = len(self._queues) > 1
        self._burst_all = burst and self._multi
        self._credit = [0] * len(self._queues)
        # Only with several queues: the queue of each running job (one queue: arq's queue_name).
        self._job_queue: dict[str, str] = {}
        self._ready_to_pick = ready_to_pick
        self._pick_script: Any = None
        self._token_prefix = uuid.uuid4().hex[:12]
        self._calls = itertools.count()
        self._finished: Coalescer[tuple[str, str], None] = Coalescer(
            self._remove_finished, max_batch=FINISH_BATCH, linger=0, name="finish"
        )

    @property
    def queue_keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self._queues)

    def _queue_of(self, job_id: str) -> str:
        """The queue of a job this worker picked, forgotten as it finishes (each finish asks once)."""
        if not self._multi:
            return self.queue_name
        return self._job_queue.pop(job_id, self.queue_name)

    # -- polling --------------------------------------------------------------------------------

    async def main(self) -> None:
        try:
            await super().main()
        except _BurstDone:
            await asyncio.gather(*self.tasks.values())

    async def _poll_iteration(self) -> None:
        if not self._multi:
            return await super()._poll_iteration()
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            await self._poll_queues()
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # as arq's poll: an error in a job's task surfaces here
        await self.heart_beat()
        if self._burst_all and await self._all_empty():
            raise _BurstDone

    async def _all_empty(self) -> bool:
        async with self.pool.pipeline(transaction=False) as pipe:
            for key in self.queue_keys:
                pipe.zcard(key)
            sizes = await pipe.execute()
        return not any(sizes)

    async def _poll_queues(self) -> None:
        """Read every queue's due jobs in one round trip, then pick by weight."""
        now = timestamp_ms()
        async with self.pool.pipeline(transaction=False) as pipe:
            for key in self.queue_keys:
                pipe.zrangebyscore(key, min=float("-inf"), max=now, start=0, num=self.queue_read_limit)
            read: list[list[bytes]] = await pipe.execute()
        if any(read) and await self._ready_to_pick():
            await self._start_weighted([self._not_mine(ids) for ids in read])

    def _not_mine(self, job_ids: list[bytes]) -> list[str]:
        """Due job ids as read, without the jobs this worker runs (they stay queued until they finish)."""
        out = []
        for raw in job_ids:
            job_id = raw.decode()
            task = self.tasks.get(job_id)
            if task is None or task.done():
                out.append(job_id)
        return out

    async def _start_weighted(self, candidates: list[list[str]]) -> None:
        """Rounds of one pipelined pick per queue, each queue asked for its share of the free slots; a
        queue whose jobs were taken by other workers leaves its share to the others in the next round."""
        weights = [weight for _, weight in self._queues]
        while (room := self.max_jobs - self.job_counter) > 0:
            shares = split_room(room, weights, [len(c) for c in candidates], self._credit)
            asks = [(i, share, candidates[i][: share * PICK_FACTOR]) for i, share in enumerate(shares) if share]
            if not asks:
                return
            for index, _, asked in asks:
                del candidates[index][: len(asked)]
            answers = await self._pick_many([(self._queues[i][0], share, asked) for i, share, asked in asks])
            if answers is None:
                return
            for (index, _, _), picked in zip(asks, answers, strict=True):
                await self._start_picked(self._queues[index][0], picked)

    # -- picking --------------------------------------------------------------------------------

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's poll read these due jobs of the one queue: pick as many as there is room for, a round
        trip per PICK_FACTOR * room job ids asked about (one, unless other workers hold many of them)."""
        if not await self._ready_to_pick():
            return
        remaining = iter(job_ids)
        while (room := self.max_jobs - self.job_counter) > 0:
            candidates = []
            for raw in remaining:
                job_id = raw.decode()
                task = self.tasks.get(job_id)
                if task is None or task.done():  # a job this worker runs is never asked about again
                    candidates.append(job_id)
                    if len(candidates) >= room * PICK_FACTOR:
                        break
            if not candidates:
                return
            picked = await self._pick(self.queue_name, room, candidates)
            if picked is None:
                return
            await self._start_picked(self.queue_name, picked)

    async def _start_picked(self, queue: str, picked: list[Any]) -> None:
        for raw_id, raw_score, data, job_try in picked:
            await self.sem.acquire()  # never waits: there is room for every job picked
            self.job_counter += 1
            job_id, score = raw_id.decode(), int(float(raw_score))
            if self._multi:
                self._job_queue[job_id] = queue
            # data None: expired, or an abort waits for it; arq's run_job reads it again and deals with it
            task = self.loop.create_task(
                self.run_job(job_id, score) if data is None else self._run_picked(job_id, score, data, job_try)
            )
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    def _pick_args(self, room: int, candidates: list[str]) -> list[Any]:
        token = f"{self._token_prefix}:{next(self._calls)}"
        return [timestamp_ms(), int(self.in_progress_timeout_s * 1000), room, token, *candidates]

    def _script(self) -> Any:
        if self._pick_script is None:
            self._pick_script = self.pool.register_script(PICK_SCRIPT)
        return self._pick_script

    async def _pick(self, queue: str, room: int, candidates: list[str]) -> list[Any] | None:
        """One PICK_SCRIPT call on ``queue``; None when Redis could not be reached (the next poll tries again)."""
        try:
            picked: list[Any] = await self._script()(
                keys=[queue, abort_jobs_ss], args=self._pick_args(room, candidates)
            )
        except LOST_CONNECTION as exc:
            log.warning("redis connection lost while picking jobs; next poll retries", error=str(exc))
            return None
        return picked

    async def _pick_many(self, asks: list[tuple[str, int, list[str]]]) -> list[list[Any]] | None:
        """PICK_SCRIPT on several queues in one round trip (each call keeps its own token)."""
        script = self._script()
        try:
            async with self.pool.pipeline(transaction=False) as pipe:
                for queue, room, candidates in asks:
                    await script(keys=[queue, abort_jobs_ss], args=self._pick_args(room, candidates), client=pipe)
                answers: list[list[Any]] = await pipe.execute()
        except LOST_CONNECTION as exc:
            log.warning("redis connection lost while picking jobs; next poll retries", error=str(exc))
            return None
        return answers

    # -- running --------------------------------------------------------------------------------

    def _common_path(self, function: Any, job_try: int, enqueue_job_try: int | None) -> bool:
        """Whether this picked job can run here rather than through arq's run_job."""
        if not isinstance(function, Function) or not self.retry_jobs:
            return False
        if self.on_job_start or self.on_job_end or self.after_job_end:
            return False
        if enqueue_job_try and enqueue_job_try > job_try:
            return False
        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        keep_seconds = self.keep_result_s if function.keep_result_s is None else function.keep_result_s
        keep_forever = function.keep_result_forever
        if keep_forever is None:
            keep_forever = self.keep_result_forever
        return job_try <= max_tries and not keep_forever and not keep_seconds

    async def _run_picked(self, job_id: str, score: int, data: bytes, job_try: int) -> None:
        """Run a picked job in this task; arq's run_job for anything off the common path."""
        try:
            function_name, args, kwargs, enqueue_job_try, enqueue_time_ms = deserialize_job_raw(
                data, deserializer=self.job_deserializer
            )
            function = self.functions[function_name]
        except Exception:  # noqa: BLE001 - arq's run_job reads the job again and reports what is wrong
            return await self.run_job(job_id, score)
        if not self._common_path(function, job_try, enqueue_job_try):
            return await self.run_job(job_id, score)
        assert isinstance(function, Function)
        ctx = {
            **self.ctx,
            "job_id": job_id,
            "job_try": job_try,
            "enqueue_time": ms_to_datetime(enqueue_time_ms),
            "score": score,
        }
        timeout = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        current = asyncio.current_task()
        assert current is not None
        self.job_tasks[job_id] = current  # arq's abort cancels this task
        try:
            async with asyncio.timeout(timeout):
                await function.coroutine(ctx, *args, **kwargs)
        except Retry as exc:
            self.jobs_retried += 1
            defer = exc.defer_score + (timestamp_ms() - score) if exc.defer_score else None
            await asyncio.shield(self.finish_job(job_id, False, None, None, False, defer, None))
            return
        except asyncio.CancelledError:
            if job_id not in self.aborting_tasks:  # shutdown: the job stays queued for the next worker
                self.jobs_retried += 1
                await asyncio.shield(self.finish_job(job_id, False, None, None, False, None, None))
                return
            self.aborting_tasks.remove(job_id)
            self.jobs_failed += 1
            log.debug("job aborted", job_id=job_id)  # the runner logs the cancel with the task's ids
        except Exception as exc:
            self.jobs_failed += 1
            log.exception("job failed", job_id=job_id, function=function_name, error=repr(exc))
        else:
            self.jobs_complete += 1
        finally:
            self.job_tasks.pop(job_id, None)
        # Shielded as arq's finish_job: a cancel while waiting still removes the job. The queue is
        # read now: by the time the batch is written this job's task may be gone.
        await asyncio.shield(self._finished.add((job_id, self._queue_of(job_id))))

    # -- finishing, in the job's own queue --------------------------------------------------------

    async def _remove_finished(self, jobs: Sequence[tuple[str, str]]) -> list[None]:
        """arq's finish_job (result not kept) for many jobs: one MULTI/EXEC."""
        job_ids = [job_id for job_id, _ in jobs]
        keys = [prefix + job_id for job_id in job_ids for prefix in (in_progress_key_prefix, retry_key_prefix)]
        keys += [job_key_prefix + job_id for job_id in job_ids]
        by_queue: dict[str, list[str]] = {}
        for job_id, queue in jobs:
            by_queue.setdefault(queue, []).append(job_id)
        async with self.pool.pipeline(transaction=True) as tr:
            tr.delete(*keys)
            tr.zrem(abort_jobs_ss, *job_ids)
            for queue, ids in by_queue.items():
                tr.zrem(queue, *ids)
            await tr.execute()
        return [None] * len(jobs)

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's finish_job in the job's own queue (arq's removes from, or re-scores in, ``queue_name``)."""
        if not self._multi:
            return await super().finish_job(
                job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score, keep_in_progress
            )
        queue = self._queue_of(job_id)
        async with self.pool.pipeline(transaction=True) as tr:
            delete_keys = []
            in_progress_key = in_progress_key_prefix + job_id
            if keep_in_progress is None:
                delete_keys.append(in_progress_key)
            else:
                tr.pexpire(in_progress_key, int(keep_in_progress * 1000))
            if finish:
                if result_data:
                    expire = None if keep_result_forever else result_timeout_s
                    tr.set(result_key_prefix + job_id, result_data, px=None if expire is None else int(expire * 1000))
                delete_keys += [retry_key_prefix + job_id, job_key_prefix + job_id]
                tr.zrem(abort_jobs_ss, job_id)
                tr.zrem(queue, job_id)
            elif incr_score:
                tr.zincrby(queue, incr_score, job_id)
            if delete_keys:
                tr.delete(*delete_keys)
            await tr.execute()

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq's finish_failed_job in the job's own queue; results are never kept (keep_result=0)."""
        if not self._multi:
            return await super().finish_failed_job(job_id, result_data)
        queue = self._queue_of(job_id)
        async with self.pool.pipeline(transaction=True) as tr:
            tr.delete(retry_key_prefix + job_id, in_progress_key_prefix + job_id, job_key_prefix + job_id)
            tr.zrem(abort_jobs_ss, job_id)
            tr.zrem(queue, job_id)
            await tr.execute()


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What ``build_worker`` needs to know, in TaskFlow's terms."""

    queue: str
    concurrency: int
    poll_delay_seconds: float
    max_timeout_seconds: float
    shutdown_grace_seconds: float
    health_check_interval_seconds: int
    redis: RedisSettings
    # The queues consumed, by name, with their weights; ``queue`` is the default queue's key they derive from.
    queues: tuple[tuple[str, int], ...] = ((DEFAULT_QUEUE, 1),)


def build_worker(
    run_task: RunTask,
    spec: WorkerSpec,
    *,
    ready_to_pick: ReadyToPick,
    on_startup: Callable[[TaskQueue], Awaitable[None]],
    on_shutdown: Callable[[], Awaitable[None]],
    burst: bool = False,
) -> TaskflowWorker:
    """The arq Worker running ``run_task(ctx, task_id)`` for each job of ``spec.queues``: results never
    kept, arq's own retry count out of the way, aborts allowed. ``on_startup`` gets a TaskQueue over
    the worker's own Redis connection (with its outage retries)."""
    queues = [(queue_key(spec.queue, name), weight) for name, weight in spec.queues]

    async def startup(ctx: dict[str, Any]) -> None:
        await on_startup(TaskQueue(ctx["redis"], base=spec.queue))

    async def shutdown(ctx: dict[str, Any]) -> None:
        await on_shutdown()

    return TaskflowWorker(
        functions=[
            func(
                cast(WorkerCoroutine, run_task),
                name=RUN_TASK,
                timeout=spec.max_timeout_seconds + RUN_TASK_TIMEOUT_EXTRA.total_seconds(),
                max_tries=ARQ_MAX_TRIES,
                keep_result=0,
            )
        ],
        ready_to_pick=ready_to_pick,
        queues=queues,
        redis_settings=spec.redis,
        # arq's own queue: the first consumed (one queue: arq's poll reads it, exactly as before queues had names)
        queue_name=queues[0][0],
        max_jobs=spec.concurrency,
        poll_delay=spec.poll_delay_seconds,
        keep_result=0,
        allow_abort_jobs=True,
        job_completion_wait=spec.shutdown_grace_seconds,
        handle_signals=not burst,
        burst=burst,
        on_startup=startup,
        on_shutdown=shutdown,
        health_check_interval=spec.health_check_interval_seconds,
        log_results=False,
    )
