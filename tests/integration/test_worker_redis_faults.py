"""The worker survives Redis dropping its connection while arq picks a job (issue 3's soak found
that arq let a WatchError end the worker, holding a concurrency slot)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from arq.connections import ArqRedis
from arq.worker import func

from taskflow_worker._arq_worker import TaskflowWorker

MAX_JOBS = 4


async def test_a_connection_killed_inside_the_watch_leaves_the_job_for_the_next_poll(redis: ArqRedis) -> None:
    queue_name = f"taskflow-test:faults:{uuid4().hex[:8]}"
    ran: list[str] = []

    async def job(ctx: dict[str, Any], value: str) -> None:
        ran.append(value)

    worker = TaskflowWorker(
        functions=[func(job, name="job")],
        redis_pool=redis,
        queue_name=queue_name,
        max_jobs=MAX_JOBS,
        keep_result=0,
        handle_signals=False,
    )
    enqueued = await redis.enqueue_job("job", "hello", _queue_name=queue_name)
    assert enqueued is not None
    original = redis.pipeline

    def killed_after_watch(*args: Any, **kwargs: Any) -> Any:
        pipe = original(*args, **kwargs)
        watch = pipe.watch

        async def watch_then_lose_the_connection(*names: Any) -> Any:
            answer = await watch(*names)
            client_id = await pipe.execute_command("CLIENT", "ID")  # runs on the watching connection
            await redis.execute_command("CLIENT", "KILL", "ID", client_id)
            return answer

        pipe.watch = watch_then_lose_the_connection
        return pipe

    try:
        redis.pipeline = killed_after_watch  # type: ignore[method-assign]
        await worker.start_jobs([enqueued.job_id.encode()])
        assert (worker.job_counter, worker.sem._value) == (0, MAX_JOBS + 1)  # the slot came back (arq: max_jobs + 1)
        assert not worker.tasks
    finally:
        redis.pipeline = original  # type: ignore[method-assign]

    await worker.start_jobs([enqueued.job_id.encode()])  # the next poll picks it
    await asyncio.wait_for(asyncio.gather(*worker.tasks.values()), 10)
    assert ran == ["hello"]
    await redis.delete(f"arq:in-progress:{enqueued.job_id}", f"arq:retry:{enqueued.job_id}")
    await redis.delete(queue_name)
