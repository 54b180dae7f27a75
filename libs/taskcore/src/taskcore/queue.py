"""The arq side: one job per task, job id = task id, carrying only the id.

Priority: arq runs due jobs in score order (the due time in ms). A task due now is
enqueued with its score moved back ``priority`` hours, so among tasks that are due,
higher priorities run first; a delayed task or a retry enters at its due time.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.asyncio import ConnectionPool
from redis.exceptions import AuthenticationError, InvalidResponse, NoPermissionError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskcore.errors import outage_reason, unavailable_on

RUN_TASK = "run_task"  # the single arq function every task runs through
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


@dataclass(frozen=True, slots=True)
class Enqueue:
    """One job to add: the task's id, due time and priority."""

    task_id: UUID
    run_at: datetime
    priority: int = 0


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
    """The task side of one arq queue: the client's ``default_queue_name``."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self.queue_name = redis.default_queue_name
        self._enqueue_script = redis.register_script(_ENQUEUE_SCRIPT)
        self._exists_script = redis.register_script(_EXISTS_SCRIPT)

    async def ping(self) -> None:
        async with _translate_errors():
            await self.redis.ping()

    async def enqueue(self, task_id: UUID, *, run_at: datetime, priority: int = 0) -> bool:
        """Add the task's job; False when a job for it already exists (it will run anyway)."""
        return (await self.enqueue_many([Enqueue(task_id, run_at, priority)]))[0]

    async def enqueue_many(self, jobs: Sequence[Enqueue]) -> list[bool]:
        """Add many jobs, a chunk per round trip; each answer as for ``enqueue``."""
        added: list[bool] = []
        now_ms = timestamp_ms()
        serializer = self.redis.job_serializer
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            args: list[str | int | bytes] = [job_key_prefix, result_key_prefix]
            for job in jobs[start : start + ENQUEUE_CHUNK]:
                # In integer milliseconds (datetime arithmetic costs more than the rest for a batch).
                ahead_ms = int(job.run_at.timestamp() * 1000) - now_ms
                priority_ms = job.priority * _PRIORITY_STEP_MS
                if ahead_ms > 0:  # due later: enters at its due time
                    due_ms, expires_ms = now_ms + ahead_ms, ahead_ms + priority_ms + _JOB_EXPIRY_EXTRA_MS
                else:  # due now: moved back by its priority
                    due_ms, expires_ms = now_ms - priority_ms, priority_ms + _JOB_EXPIRY_EXTRA_MS
                key = job_id(job.task_id)
                body = serialize_job(RUN_TASK, (key,), {}, None, now_ms, serializer=serializer)
                args += [key, expires_ms, due_ms, body]
            async with _translate_errors():
                flags = await self._enqueue_script(keys=[self.queue_name], args=args)
            added += [bool(n) for n in flags]
        return added

    async def remove(self, task_id: UUID) -> None:
        """Drop a waiting task's job (the claim guard protects the race with a worker)."""
        async with _translate_errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.queue_name, job_id(task_id))
            pipe.delete(job_key_prefix + job_id(task_id))
            await pipe.execute()

    async def abort(self, task_id: UUID) -> None:
        """Ask the worker running the task to cancel it (arq abort)."""
        async with _translate_errors():
            await self.redis.zadd(abort_jobs_ss, {job_id(task_id): timestamp_ms()})

    async def requeue_stale(self, task_id: UUID, *, run_at: datetime, priority: int = 0) -> None:
        """Re-offer a task whose worker died: its job may still sit in the queue marked in progress
        (arq would wait for the job timeout before retrying it), so clear that mark first."""
        async with _translate_errors():
            await self.redis.delete(in_progress_key_prefix + job_id(task_id))
        await self.enqueue(task_id, run_at=run_at, priority=priority)

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
        self, task_ids: Sequence[UUID], *, marked_before: timedelta, mark_lifetime: timedelta
    ) -> list[UUID]:
        """The tasks whose job a worker marked in progress more than ``marked_before`` ago (arq sets the
        mark to live ``mark_lifetime``; its remaining TTL tells its age)."""
        if not task_ids:
            return []
        async with _translate_errors(), self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.pttl(in_progress_key_prefix + job_id(task_id))
            remaining = await pipe.execute()
        lifetime_ms = mark_lifetime.total_seconds() * 1000
        limit_ms = marked_before.total_seconds() * 1000
        return [t for t, ms in zip(task_ids, remaining, strict=True) if ms > 0 and lifetime_ms - ms > limit_ms]

    async def clear_in_progress(self, task_ids: Sequence[UUID]) -> None:
        """Let any worker take these jobs again (the claim guard keeps a task from running twice)."""
        if task_ids:
            async with _translate_errors():
                await self.redis.delete(*(in_progress_key_prefix + job_id(t) for t in task_ids))

    async def close(self) -> None:
        await self.redis.aclose(close_connection_pool=True)
