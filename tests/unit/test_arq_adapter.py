"""What the arq adapter (taskcore.queue) relies on in arq, checked against the installed arq.

The adapter reproduces arq's key layout in Lua, overrides and calls Worker internals, and reads
arq's job encoding. None of that is arq's public API, so a new arq release may change it
silently; each test here names the internal it checks, so that a failure says what changed and
where the adapter uses it. arq is pinned to its minor release in the pyprojects; raise the pin
only with this file passing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import arq
import arq.constants
import pytest
from arq.jobs import deserialize_job_raw, serialize_job
from arq.worker import Function, Retry, Worker

from taskcore import queue as adapter
from taskcore.queue import RUN_TASK, TaskflowWorker, WorkerSpec, build_worker, redis_settings

# The constants the adapter's Lua scripts and key names spell out.
ARQ_CONSTANTS = {
    "job_key_prefix": "arq:job:",
    "in_progress_key_prefix": "arq:in-progress:",
    "result_key_prefix": "arq:result:",
    "retry_key_prefix": "arq:retry:",
    "abort_jobs_ss": "arq:abort",
    "health_check_key_suffix": ":health-check",
}

# Worker methods the adapter overrides (start_jobs, _poll_iteration, main, finish_job, finish_failed_job)
# or calls, with the parameters it passes.
WORKER_METHODS: dict[str, tuple[str, ...]] = {
    "start_jobs": ("self", "job_ids"),
    "_poll_iteration": ("self",),
    "main": ("self",),
    "_cancel_aborted_jobs": ("self",),
    "heart_beat": ("self",),
    "finish_failed_job": ("self", "job_id", "result_data"),
    "run_job": ("self", "job_id", "score"),
    "finish_job": (
        "self",
        "job_id",
        "finish",
        "result_data",
        "result_timeout_s",
        "keep_result_forever",
        "incr_score",
        "keep_in_progress",
    ),
    "_release_sem_dec_counter_on_complete": ("self",),
}

# Worker attributes TaskflowWorker reads or writes.
WORKER_ATTRIBUTES = (
    "tasks",
    "job_tasks",
    "aborting_tasks",
    "sem",
    "job_counter",
    "max_jobs",
    "ctx",
    "queue_name",
    "functions",
    "job_deserializer",
    "retry_jobs",
    "on_job_start",
    "on_job_end",
    "after_job_end",
    "max_tries",
    "keep_result_s",
    "keep_result_forever",
    "job_timeout_s",
    "in_progress_timeout_s",
    "allow_pick_jobs",
    "allow_abort_jobs",
    "queue_read_limit",
    "burst",
    "jobs_complete",
    "jobs_retried",
    "jobs_failed",
    "loop",
)

OTHER_FUNCTIONS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "arq.jobs.serialize_job": (
        serialize_job,
        ("function_name", "args", "kwargs", "job_try", "enqueue_time_ms", "serializer"),
    ),
    "arq.jobs.deserialize_job_raw": (deserialize_job_raw, ("r", "deserializer")),
    "arq.worker.Retry": (Retry.__init__, ("self", "defer")),
}


def _params(fn: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


async def _noop(ctx: dict[str, Any], task_id: str) -> None:
    return None


async def _ready() -> bool:
    return True


async def _nothing(*_: object) -> None:
    return None


def _worker(max_timeout_seconds: float = 300) -> TaskflowWorker:
    spec = WorkerSpec(
        queue="adapter-test",
        concurrency=3,
        poll_delay_seconds=0.1,
        max_timeout_seconds=max_timeout_seconds,
        shutdown_grace_seconds=1,
        health_check_interval_seconds=5,
        redis=redis_settings("redis://127.0.0.1:1/0", timeout_seconds=1, outage_tolerance_seconds=1),
    )
    # Built, never started: construction opens no connection (and, inside a running loop, no loop).
    return build_worker(_noop, spec, ready_to_pick=_ready, on_startup=_nothing, on_shutdown=_nothing, burst=True)


def test_the_installed_arq_is_the_pinned_minor_release() -> None:
    assert arq.VERSION.startswith("0.28."), (
        f"arq {arq.VERSION} is installed; the adapter was checked against 0.28.x: re-check this file's "
        "expectations against the new release before raising the pin"
    )


@pytest.mark.parametrize(("name", "expected"), sorted(ARQ_CONSTANTS.items()))
def test_arq_key_names_are_those_the_lua_scripts_use(name: str, expected: str) -> None:
    actual = getattr(arq.constants, name, None)
    assert actual == expected, (
        f"arq.constants.{name} is {actual!r}, was {expected!r}: the adapter's PICK_SCRIPT/enqueue script "
        "and key names (taskcore/queue.py) must follow"
    )


@pytest.mark.parametrize(("method", "params"), sorted(WORKER_METHODS.items()))
def test_worker_methods_the_adapter_overrides_or_calls_keep_their_parameters(
    method: str, params: tuple[str, ...]
) -> None:
    fn = getattr(Worker, method, None)
    assert fn is not None, f"arq's Worker no longer has {method}(), which TaskflowWorker overrides or calls"
    assert _params(fn) == params, f"arq's Worker.{method} now takes {_params(fn)}, TaskflowWorker passes {params}"


@pytest.mark.parametrize(("name", "entry"), sorted(OTHER_FUNCTIONS.items()))
def test_arq_functions_the_adapter_calls_keep_their_parameters(
    name: str, entry: tuple[Callable[..., Any], tuple[str, ...]]
) -> None:
    fn, params = entry
    assert _params(fn) == params, f"{name} now takes {_params(fn)}, the adapter passes {params}"


async def test_worker_attributes_the_adapter_reads_exist() -> None:
    worker = _worker()
    missing = [a for a in WORKER_ATTRIBUTES if not hasattr(worker, a)]
    assert not missing, f"arq's Worker no longer sets {missing}, which TaskflowWorker reads or writes"
    assert isinstance(inspect.getattr_static(Worker, "pool"), property), "arq's Worker.pool is no longer a property"
    fields = set(Function.__dataclass_fields__)
    used = {"coroutine", "timeout_s", "max_tries", "keep_result_s", "keep_result_forever"}
    assert used <= fields, f"arq's Function lost {sorted(used - fields)}, which TaskflowWorker reads"


async def test_in_progress_mark_lifetime_is_arqs() -> None:
    worker = _worker(max_timeout_seconds=300)
    expected = adapter.in_progress_mark_lifetime(300).total_seconds()
    assert worker.in_progress_timeout_s == expected, (
        f"arq's Worker marks a job in progress for {worker.in_progress_timeout_s}s, the adapter expects "
        f"{expected}s (its longest function timeout + ARQ_IN_PROGRESS_EXTRA): the reconciler would misjudge "
        "stale marks"
    )


def test_the_try_counter_lifetime_is_arqs() -> None:
    source = inspect.getsource(Worker.run_job)
    assert f"retry_key_prefix + job_id, {adapter.RETRY_KEY_SECONDS})" in source, (
        f"arq's run_job no longer keeps a job's try counter (arq:retry:<id>) for {adapter.RETRY_KEY_SECONDS}s, "
        "as PICK_SCRIPT does"
    )


def test_a_job_encodes_and_decodes_as_the_adapter_expects() -> None:
    body = serialize_job(RUN_TASK, ("task-id",), {}, None, 1234)
    decoded = deserialize_job_raw(body)
    assert decoded == (RUN_TASK, ("task-id",), {}, None, 1234), (
        f"arq's job layout changed: deserialize_job_raw gives {decoded!r}; TaskflowWorker unpacks "
        "(function, args, kwargs, job_try, enqueue_time_ms)"
    )


def test_a_defer_is_arqs_retry_with_its_delay_in_milliseconds() -> None:
    exc = adapter.defer(1.5)
    assert isinstance(exc, Retry), "taskcore.queue.defer no longer raises arq's Retry"
    assert exc.defer_score == 1500, f"arq's Retry(defer=1.5).defer_score is {exc.defer_score}, expected 1500 (ms)"


# Where arq names "the" queue: TaskflowWorker with several queues overrides each of these steps to
# use the job's own queue (or every consumed queue); one that arq adds or moves must be handled too.
QUEUE_NAME_USES = {
    "_poll_iteration": "self.queue_name, min=float('-inf')",
    "finish_job": "tr.zincrby(self.queue_name, incr_score, job_id)",
    "finish_failed_job": "tr.zrem(self.queue_name, job_id)",
    "main": "await self.pool.zcard(self.queue_name)",
    "record_health": "await self.pool.zcard(self.queue_name)",
}
# The Worker steps TaskflowWorker leaves to arq: they must not touch a queue by its name.
QUEUE_FREE = ("run_job", "_cancel_aborted_jobs", "heart_beat", "close", "async_run")


@pytest.mark.parametrize(("method", "line"), sorted(QUEUE_NAME_USES.items()))
def test_arqs_uses_of_its_one_queue_are_those_the_adapter_overrides(method: str, line: str) -> None:
    source = inspect.getsource(getattr(Worker, method))
    assert line in source, (
        f"arq's Worker.{method} no longer does `{line}`: TaskflowWorker's override of it for several queues "
        "(taskcore/queue.py) was written against that; re-check it"
    )


def test_arqs_other_steps_do_not_name_the_queue() -> None:
    for method in QUEUE_FREE:
        source = inspect.getsource(getattr(Worker, method))
        uses = [line.strip() for line in source.splitlines() if "self.queue_name" in line]
        # run_job names the queue only in the result it keeps (TaskFlow keeps none)
        uses = [u for u in uses if not u.startswith(("queue_name=self.queue_name", "self.queue_name,"))]
        assert not uses, f"arq's Worker.{method} now uses its queue_name ({uses}): a job of another queue would be lost"


def test_arqs_poll_loop_calls_the_poll_iteration_and_lets_its_errors_through() -> None:
    source = inspect.getsource(Worker.main)
    assert "async for _ in poll(self.poll_delay_s):\n            await self._poll_iteration()" in source, (
        "arq's Worker.main no longer awaits _poll_iteration() in its poll loop: TaskflowWorker's multi-queue poll "
        "and its burst end (_BurstDone raised from _poll_iteration) rely on it"
    )
    assert "except" not in source.split("async for _ in poll", 1)[1], (
        "arq's Worker.main now catches errors in its poll loop: TaskflowWorker ends a multi-queue burst by raising"
    )


async def test_a_worker_of_several_queues_keys_each_and_weighs_them() -> None:
    spec = WorkerSpec(
        queue="adapter-test",
        concurrency=3,
        poll_delay_seconds=0.1,
        max_timeout_seconds=10,
        shutdown_grace_seconds=1,
        health_check_interval_seconds=5,
        redis=redis_settings("redis://127.0.0.1:1/0", timeout_seconds=1, outage_tolerance_seconds=1),
        queues=(("critical", 3), ("default", 1)),
    )
    worker = build_worker(_noop, spec, ready_to_pick=_ready, on_startup=_nothing, on_shutdown=_nothing, burst=True)
    assert worker.queue_keys == ("adapter-test:critical", "adapter-test")
    assert worker.queue_name == "adapter-test:critical"
    assert worker.burst is False, "arq's own burst check (its one queue) must be off: the adapter checks every queue"
    single = _worker()
    assert single.queue_keys == ("adapter-test",)
    assert single.queue_name == "adapter-test"
    assert single.burst
