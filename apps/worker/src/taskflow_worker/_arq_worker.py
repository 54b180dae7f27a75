"""arq's Worker with bulk picking and grouped finishing; arq's keys and semantics unchanged.

arq picks each job on its own: WATCH the job's in-progress key, EXISTS, ZSCORE, MULTI/PSETEX/EXEC,
then one more transaction to read the job and count the try — five round trips per job, and the
same again on every poll for each job this worker is already running (they stay in the queue until
they finish). At a few thousand jobs a second that sequence, not the jobs, sets the pace.

``TaskflowWorker`` keeps arq's poll loop, abort handling, signals and shutdown, and replaces two
steps:

* **start_jobs** picks every job it has room for in one script call (``CLAIM_SCRIPT``): for each
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
import itertools
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import deserialize_job_raw
from arq.utils import ms_to_datetime, timestamp_ms
from arq.worker import Function, Retry, Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from taskflow_worker.batching import Coalescer

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
CLAIM_SCRIPT = f"""
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


class TaskflowWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._claim_script: Any = None
        self._token_prefix = uuid.uuid4().hex[:12]
        self._calls = itertools.count()
        self._finished: Coalescer[str, None] = Coalescer(
            self._remove_finished, max_batch=FINISH_BATCH, linger=0, name="finish"
        )

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Pick as many of these due jobs as there is room for, a round trip per PICK_FACTOR * room
        job ids asked about (one, unless other workers hold many of them), and start them."""
        runner = self.ctx.get("runner")
        if runner is not None and not await runner.ready_to_claim():
            return  # PostgreSQL is unreachable from here: the jobs stay for workers that can claim them
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
            picked = await self._pick(room, candidates)
            if picked is None:
                return
            for raw_id, raw_score, data, job_try in picked:
                await self.sem.acquire()  # never waits: there is room for every job picked
                self.job_counter += 1
                job_id, score = raw_id.decode(), int(float(raw_score))
                # data None: expired, or an abort waits for it; arq's run_job reads it again and deals with it
                task = self.loop.create_task(
                    self.run_job(job_id, score) if data is None else self._run_picked(job_id, score, data, job_try)
                )
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task

    async def _pick(self, room: int, candidates: list[str]) -> list[Any] | None:
        """One CLAIM_SCRIPT call; None when Redis could not be reached (the next poll tries again)."""
        if self._claim_script is None:
            self._claim_script = self.pool.register_script(CLAIM_SCRIPT)
        token = f"{self._token_prefix}:{next(self._calls)}"
        try:
            picked: list[Any] = await self._claim_script(
                keys=[self.queue_name, abort_jobs_ss],
                args=[timestamp_ms(), int(self.in_progress_timeout_s * 1000), room, token, *candidates],
            )
        except LOST_CONNECTION as exc:
            log.warning("redis connection lost while picking jobs; next poll retries", error=str(exc))
            return None
        return picked

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
        # Shielded as arq's finish_job: a cancel while waiting still removes the job.
        await asyncio.shield(self._finished.enqueue(job_id))

    async def _remove_finished(self, job_ids: Sequence[str]) -> list[None]:
        """arq's finish_job (result not kept) for many jobs: one MULTI/EXEC."""
        keys = [prefix + job_id for job_id in job_ids for prefix in (in_progress_key_prefix, retry_key_prefix)]
        keys += [job_key_prefix + job_id for job_id in job_ids]
        async with self.pool.pipeline(transaction=True) as tr:
            tr.delete(*keys)
            tr.zrem(abort_jobs_ss, *job_ids)
            tr.zrem(self.queue_name, *job_ids)
            await tr.execute()
        return [None] * len(job_ids)
