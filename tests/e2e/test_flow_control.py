"""Flow control with real processes: an API and several `taskflow-worker` processes over a database
and queue of their own, checked from what PostgreSQL recorded for every task (started_at,
finished_at, the admitted run_at) and from the REST views.

Each test would fail without the mechanism it names: max_running across workers, slots freed by a
killed worker's lease expiry (and not counted twice by a retry or a cancel), a rate across workers,
pauses, queue weights, fair share between keys, and a queue no worker consumes.

The tests share one API and database (the module's ``flow_stack``); each uses queues and limit keys of
its own and starts the workers it needs, consuming only its queues, and stops them when it ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from loadtest.procs import free_port
from loadtest.procs import stop as terminate
from taskcore.store import create_pool
from tests.e2e._helpers import TASKS, submit, wait_for_status, wait_until
from tests.e2e.conftest import Stack, provision

pytestmark = pytest.mark.e2e

BATCH = f"{TASKS}/batch"
LIMITS = "/api/v1/limits"
QUEUES = "/api/v1/queues"
Row = asyncpg.Record
Workers = Callable[..., Awaitable[None]]


@pytest.fixture(scope="module")
async def flow_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with provision("taskflow_flow") as env:
        live = Stack(url=f"http://127.0.0.1:{free_port()}", env=env, logs=tmp_path_factory.mktemp("flow-logs"))
        try:
            await asyncio.to_thread(live.start_api)
            yield live
        finally:
            await asyncio.to_thread(live.stop)


@pytest.fixture
def stack(flow_stack: Stack) -> Iterator[Stack]:
    """The shared stack; the workers a test starts are stopped when it ends."""
    before = len(flow_stack.workers)
    yield flow_stack
    for proc in flow_stack.workers[before:]:
        terminate(proc)


@pytest.fixture
async def start_workers(stack: Stack, api: httpx.AsyncClient) -> Workers:
    async def start(count: int, queues: str, **env: str) -> None:
        """Start ``count`` workers consuming ``queues`` (TASKFLOW_WORKER_QUEUES) and wait until each is
        seen live on each of them (the heartbeat registers its queues)."""
        procs = [stack.start_worker(TASKFLOW_WORKER_QUEUES=queues, **env) for _ in range(count)]
        names = [part.partition(":")[0] for part in queues.split(",")]

        async def seen() -> bool:
            for proc in procs:
                assert proc.poll() is None, stack.log(f"worker-{stack.workers.index(proc)}")
            live = {q["name"]: q["workers"] for q in (await api.get(QUEUES)).json()}
            return all(live.get(name, 0) >= count for name in names)

        await wait_until(seen, within=30, what=f"{count} worker(s) on {queues}", every=0.1)

    return start


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
async def db(flow_stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(flow_stack.env["TASKFLOW_DATABASE_URL"], max_size=2)
    yield pool
    await pool.close()


async def put_limit(api: httpx.AsyncClient, key: str, **limit: Any) -> None:
    response = await api.put(f"{LIMITS}/{key}", json=limit)
    assert response.status_code in (200, 201), response.text


async def submit_many(api: httpx.AsyncClient, tasks: Sequence[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(tasks), 1000):
        response = await api.post(BATCH, json={"tasks": list(tasks[start : start + 1000])})
        assert response.status_code == 202, response.text
        ids += [item["id"] for item in response.json()["items"]]
    return ids


def sleeps(count: int, seconds: float, **options: Any) -> list[dict[str, Any]]:
    return [{"task_type": "sleep", "payload": {"seconds": seconds}, **options} for _ in range(count)]


async def rows(db: asyncpg.Pool, ids: Sequence[str]) -> list[Row]:
    found: list[Row] = await db.fetch(
        """SELECT id, status, queue, limit_keys, attempt, run_at, started_at, finished_at FROM tasks
            WHERE id = ANY($1::uuid[]) ORDER BY started_at NULLS LAST, id""",
        list(ids),
    )
    return found


async def count(db: asyncpg.Pool, ids: Sequence[str], condition: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND {condition}", list(ids)))


async def all_finished(db: asyncpg.Pool, ids: Sequence[str], *, within: float, status: str = "succeeded") -> None:
    async def done() -> bool:
        return await count(db, ids, f"status = '{status}'") == len(ids)

    await wait_until(done, within=within, what=f"{len(ids)} tasks {status}", every=0.1)


def max_overlap(spans: Sequence[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (an end at the same instant as a start closes first)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda e: (e[0], e[1]))
    open_now = most = 0
    for _, step in events:
        open_now += step
        most = max(most, open_now)
    return most


async def in_use(api: httpx.AsyncClient, key: str) -> int:
    response = await api.get(f"{LIMITS}/{key}")
    assert response.status_code == 200, response.text
    return int(response.json()["in_use"])


# -- (a) max_running across workers ------------------------------------------------------------------


async def test_max_running_holds_across_three_workers(
    api: httpx.AsyncClient, db: asyncpg.Pool, start_workers: Workers
) -> None:
    await put_limit(api, "tenant:a", max_running=3)
    await start_workers(3, "qa", TASKFLOW_WORKER_CONCURRENCY="4")
    ids = await submit_many(api, sleeps(24, 0.3, queue="qa", limit_keys=["tenant:a"]))
    # Another key alongside, unlimited: the limit must not hold it up (no head-of-line blocking).
    free = await submit_many(api, sleeps(6, 0.3, queue="qa", limit_keys=["tenant:b"]))
    await all_finished(db, ids + free, within=20)
    done = await rows(db, ids)
    assert max_overlap([(r["started_at"], r["finished_at"]) for r in done]) <= 3
    assert {r["attempt"] for r in done} == {1}
    assert await in_use(api, "tenant:a") == 0
    last_free = max(r["finished_at"] for r in await rows(db, free))
    assert last_free < max(r["finished_at"] for r in done), "the unlimited key waited behind the limited one"


# -- (b) slots freed by a killed worker; no double count -----------------------------------------------


async def test_a_killed_workers_slots_come_back_when_its_leases_expire(
    stack: Stack, api: httpx.AsyncClient, db: asyncpg.Pool, start_workers: Workers
) -> None:
    await put_limit(api, "stripe", max_running=2)
    await start_workers(1, "qb")
    doomed = stack.workers[-1]
    held = await submit_many(api, sleeps(2, 60, queue="qb", limit_keys=["stripe"], max_retries=0))
    for task_id in held:
        await wait_for_status(api, task_id, "running", within=10)
    rest = await submit_many(api, sleeps(4, 0.2, queue="qb", limit_keys=["stripe"]))
    assert await in_use(api, "stripe") == 2
    await start_workers(2, "qb")  # the doomed one and a survivor
    doomed.kill()
    doomed.wait(timeout=10)
    # Lease 3 s, reconcile every 0.5 s: the held slots come back and the rest of the key runs on the survivor.
    for task_id in held:
        body = await wait_for_status(api, task_id, "failed", within=20)
        assert body["error"]["type"] == "LeaseExpired", body
    await all_finished(db, rest, within=15)
    assert max_overlap([(r["started_at"], r["finished_at"]) for r in await rows(db, rest)]) <= 2

    async def freed() -> bool:
        return await in_use(api, "stripe") == 0

    await wait_until(freed, within=5, what="stripe's slots all free")


async def test_a_retry_or_a_cancel_of_a_running_task_frees_its_slot_once(
    api: httpx.AsyncClient, db: asyncpg.Pool, start_workers: Workers
) -> None:
    await put_limit(api, "one", max_running=1)
    await start_workers(2, "qr")
    # Fails once, retries after its backoff: the slot is given back, then taken again, never twice.
    flaky = await submit(api, "fail", {"times": 1}, queue="qr", limit_keys=["one"], max_retries=2)
    body = await wait_for_status(api, flaky["id"], "succeeded", within=15)
    assert body["attempt"] == 2
    assert await in_use(api, "one") == 0
    # A running task cancelled: its slot goes to the next task of the key.
    long = await submit(api, "sleep", {"seconds": 30}, queue="qr", limit_keys=["one"])
    await wait_for_status(api, long["id"], "running", within=10)
    after = await submit_many(api, sleeps(3, 0.2, queue="qr", limit_keys=["one"]))
    await asyncio.sleep(0.5)
    assert await count(db, after, "started_at IS NOT NULL") == 0, "a second task of a key of max_running 1 started"
    assert await in_use(api, "one") == 1
    assert (await api.post(f"{TASKS}/{long['id']}/cancel")).status_code in (200, 202)
    await wait_for_status(api, long["id"], "cancelled", within=10)
    await all_finished(db, after, within=10)
    assert max_overlap([(r["started_at"], r["finished_at"]) for r in await rows(db, after)]) <= 1
    usage = (await api.get(f"{LIMITS}/one")).json()
    assert usage["in_use"] == 0, usage
    assert usage["running"] == 0, usage


# -- (c) a rate across workers ---------------------------------------------------------------------------


async def test_a_rate_limit_holds_across_three_workers(
    api: httpx.AsyncClient, db: asyncpg.Pool, start_workers: Workers
) -> None:
    per_second, burst = 5, 2
    await put_limit(api, "partner-api", per_second=per_second, burst=burst)
    await start_workers(3, "qc")
    tasks = [
        {"task_type": "test", "payload": {"n": i}, "queue": "qc", "limit_keys": ["partner-api"]} for i in range(22)
    ]
    ids = await submit_many(api, tasks)
    await all_finished(db, ids, within=20)
    done = await rows(db, ids)
    starts = sorted(r["started_at"] for r in done)
    for index, start in enumerate(starts):
        window = [s for s in starts[index:] if s < start + timedelta(seconds=1)]
        assert len(window) <= per_second + burst, f"{len(window)} starts within 1 s from {start}"
    # Never claimed early: each task started at or after the start time the admitter gave it.
    early = [(r["id"], r["run_at"], r["started_at"]) for r in done if r["started_at"] < r["run_at"]]
    assert not early, early
    # 22 tasks at 5/s after a burst of 2: about 4 s from the first start to the last.
    assert starts[-1] - starts[0] >= timedelta(seconds=(len(ids) - burst) / per_second - 0.3)


# -- (d) pauses, (g) a queue no worker consumes -------------------------------------------------------------


async def test_a_paused_queue_or_task_type_accepts_but_does_not_start_until_resumed(
    api: httpx.AsyncClient, db: asyncpg.Pool, start_workers: Workers
) -> None:
    await start_workers(2, "qd,qd-other")
    assert (await api.post(f"{QUEUES}/qd/pause")).status_code == 200
    assert (await api.post("/api/v1/task-types/greet/pause")).status_code == 200
    in_queue = [await submit(api, "test", {"n": i}, queue="qd") for i in range(4)]
    of_type = [await submit(api, "greet", {"name": f"n{i}"}, queue="qd-other") for i in range(3)]
    assert {t["status"] for t in in_queue + of_type} == {"queued"}
    other = await submit(api, "test", {"n": 99}, queue="qd-other")  # other queues and types go on
    await wait_for_status(api, other["id"], "succeeded", within=10)
    await asyncio.sleep(1.5)  # several admission rounds and polls of both workers
    held = await rows(db, [t["id"] for t in in_queue + of_type])
    assert all(r["status"] == "queued" and r["started_at"] is None for r in held), held
    queue = (await api.get(f"{QUEUES}/qd")).json()
    assert queue["paused"] is True, queue
    assert queue["depth"]["queued"] == 4, queue

    assert (await api.post(f"{QUEUES}/qd/resume")).status_code == 200
    await all_finished(db, [t["id"] for t in in_queue], within=10)
    assert await count(db, [t["id"] for t in of_type], "status = 'queued'") == 3
    assert (await api.post("/api/v1/task-types/greet/resume")).status_code == 200
    await all_finished(db, [t["id"] for t in of_type], within=10)


async def test_tasks_in_a_queue_no_worker_consumes_stay_queued_and_show_no_workers(
    api: httpx.AsyncClient, db: asyncpg.Pool, start_workers: Workers
) -> None:
    await start_workers(1, "qg,reports")
    stranded = [await submit(api, "test", {"n": i}, queue="repotrs") for i in range(3)]  # a typo
    served = await submit(api, "test", {"n": 9}, queue="reports")
    await wait_for_status(api, served["id"], "succeeded", within=10)
    await asyncio.sleep(1)
    assert await count(db, [t["id"] for t in stranded], "status = 'queued'") == 3
    queues = {q["name"]: q for q in (await api.get(QUEUES)).json()}
    assert queues["repotrs"]["workers"] == 0, queues["repotrs"]
    assert queues["repotrs"]["due"] == 3, queues["repotrs"]
    assert queues["reports"]["workers"] == 1, queues["reports"]


# -- (e) weights, (f) fair share ----------------------------------------------------------------------------


async def test_weights_share_a_workers_slots_between_flooded_queues(
    api: httpx.AsyncClient, db: asyncpg.Pool, start_workers: Workers
) -> None:
    hi = await submit_many(api, sleeps(60, 0.1, queue="qe-hi"))
    lo = await submit_many(api, sleeps(60, 0.1, queue="qe-lo"))
    # The lighter queue named first: a worker that took its queues in order would start only those.
    await start_workers(1, "qe-lo:1,qe-hi:3", TASKFLOW_WORKER_CONCURRENCY="2")

    async def started_40() -> bool:
        return await count(db, hi + lo, "started_at IS NOT NULL") >= 40

    await wait_until(started_40, within=20, what="40 tasks started", every=0.1)
    first = (await rows(db, hi + lo))[:40]
    from_hi = sum(1 for r in first if r["queue"] == "qe-hi")
    # 3:1 is 30 of 40; without weights it is 20 (an even split) or 0 (the queue named first, first).
    assert 26 <= from_hi <= 34, f"{from_hi} of the first 40 starts from the queue of weight 3"


async def test_fair_share_lets_a_small_key_through_a_flood(
    api: httpx.AsyncClient, db: asyncpg.Pool, start_workers: Workers
) -> None:
    duration = 0.1
    await start_workers(1, "qf", TASKFLOW_WORKER_CONCURRENCY="10")
    flood = await submit_many(api, sleeps(300, duration, queue="qf", limit_keys=["tenant:big"]))

    async def flowing() -> bool:
        return await count(db, flood, "status = 'succeeded'") >= 20

    await wait_until(flowing, within=15, what="the flood runs", every=0.05)
    submitted = time.monotonic()
    small = await submit_many(api, sleeps(5, duration, queue="qf", limit_keys=["tenant:small"]))
    await all_finished(db, small, within=15)
    took = time.monotonic() - submitted
    left = await count(db, flood, "status <> 'succeeded'")
    assert left > 100, "the flood ended before the small key was measured: the test proves nothing"
    # In arrival order the small key would wait for the ~250 flood tasks ahead of it: 25 task durations at
    # concurrency 10. Fair share lets it through within a few task durations (plus admission and polls).
    assert took < 5 * duration + 0.7, f"the small key's 5 tasks took {took:.2f}s through a flood"
