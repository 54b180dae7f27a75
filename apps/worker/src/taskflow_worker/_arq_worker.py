"""arq's Worker, made to ride out a Redis connection lost while it picks jobs.

arq marks a job in progress inside a WATCH transaction. When the connection drops between the
WATCH and the EXEC, redis-py cannot retry (the watch is gone) and raises ``WatchError`` — which
arq lets escape from its poll loop, ending the worker, after it has already taken a concurrency
slot for the job. Here each job is picked on its own; a lost connection gives that slot back and
leaves the job in the queue for the next poll (the reconciler clears a stale in-progress mark).
"""

from __future__ import annotations

import structlog
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

log = structlog.get_logger("taskflow.worker")

LOST_CONNECTION = (WatchError, RedisConnectionError, RedisTimeoutError)


class TaskflowWorker(Worker):
    async def start_jobs(self, job_ids: list[bytes]) -> None:
        for job_id in job_ids:
            taken = self.job_counter
            try:
                await super().start_jobs([job_id])
            except LOST_CONNECTION as exc:
                if self.job_counter > taken:  # a slot was taken but no job started: give it back
                    self.job_counter -= 1
                    self.sem.release()
                log.warning("redis connection lost while picking a job; next poll retries", error=str(exc))
                return
            if self.job_counter >= self.max_jobs:
                return
