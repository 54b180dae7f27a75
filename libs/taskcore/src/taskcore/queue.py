"""The arq side: one job per task, job id = task id, carrying only the id.

Priority: arq runs due jobs in score order (the due time in ms). A task due now is
enqueued with its score moved back ``priority`` hours, so among tasks that are due,
higher priorities run first; a delayed task or a retry enters at its due time.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from uuid import UUID

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from taskcore.errors import unavailable_on

RUN_TASK = "run_task"  # the single arq function every task runs through
PRIORITY_STEP = timedelta(hours=1)
# arq's job key must outlive the time a job may wait in the queue.
JOB_EXPIRY_EXTRA = timedelta(days=2)


def job_id(task_id: UUID) -> str:
    return str(task_id)


def connect(redis_url: str, *, queue_name: str, timeout: float = 2.0) -> ArqRedis:
    """An ArqRedis client; it connects lazily, so a Redis outage does not stop a process starting."""
    pool = ConnectionPool.from_url(
        redis_url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=30
    )
    return ArqRedis(connection_pool=pool, default_queue_name=queue_name)


def _translate_errors() -> AbstractAsyncContextManager[None]:
    # redis-py reports a connection lost inside WATCH (arq's enqueue_job) as WatchError; arq itself
    # catches the WatchError of a real concurrent change, so one that reaches us means Redis went away.
    return unavailable_on("redis", (RedisConnectionError, RedisTimeoutError, WatchError, OSError))


class TaskQueue:
    """The task side of one arq queue: the client's ``default_queue_name``."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self.queue_name = redis.default_queue_name

    async def ping(self) -> None:
        async with _translate_errors():
            await self.redis.ping()

    async def enqueue(self, task_id: UUID, *, run_at: datetime, priority: int = 0) -> bool:
        """Add the task's job; False when a job for it already exists (it will run anyway)."""
        now = datetime.now(UTC)
        due = run_at if run_at > now else now - priority * PRIORITY_STEP
        async with _translate_errors():
            job = await self.redis.enqueue_job(
                RUN_TASK,
                str(task_id),
                _job_id=job_id(task_id),
                _queue_name=self.queue_name,
                _defer_until=due,
                _expires=max(run_at - now, timedelta(0)) + priority * PRIORITY_STEP + JOB_EXPIRY_EXTRA,
            )
        return job is not None

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
        if not task_ids:
            return []
        async with _translate_errors(), self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.exists(job_key_prefix + job_id(task_id))
            found = await pipe.execute()
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
