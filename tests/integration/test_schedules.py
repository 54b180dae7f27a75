"""Schedules against the real PostgreSQL (and Redis): firing slots under each catch_up and overlap
rule, exactly one task per slot with several leaders at once, and the REST contract."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from taskcore.queue import TaskQueue
from taskcore.scheduler import ScheduleInput, ScheduleService
from taskcore.schedules import CATCH_UP_CAP, CatchUp, Overlap
from taskcore.service import TaskRequest, TaskService
from taskcore.settings import Settings
from taskcore.store import create_pool
from taskcore.store.schedules import ScheduleRepository
from tests.conftest import make_settings
from tests.e2e._helpers import assert_problem
from tests.integration.test_api import make_client  # noqa: F401 - the fixture

SCHEDULES = "/api/v1/schedules"
TASK = {"task_type": "test", "payload": {"message": "tick"}}


@pytest.fixture(autouse=True)
async def _no_schedules(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await pool.execute("TRUNCATE schedules, unique_keys")


@pytest.fixture
def schedules(service: TaskService, pool: asyncpg.Pool) -> ScheduleService:
    return ScheduleService(service=service, repo=ScheduleRepository(pool))


async def every_second(schedules: ScheduleService, name: str = "tick", **options: Any) -> UUID:
    spec = ScheduleInput(name=name, task=TaskRequest(task_type="test", payload={"message": "tick"}), every_seconds=1)
    created = await schedules.create(ScheduleInput(**{**_fields(spec), **options}))
    return created.id


def _fields(spec: ScheduleInput) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in ScheduleInput.__dataclass_fields__}


async def backdate(pool: asyncpg.Pool, schedule_id: UUID, seconds: float) -> datetime:
    """Pretend the leader was down: the schedule's next slot is ``seconds`` in the past."""
    slot: datetime = await pool.fetchval(
        """UPDATE schedules SET next_run_at = date_trunc('second', clock_timestamp()) - make_interval(secs => $2)
           WHERE id = $1 RETURNING next_run_at""",
        schedule_id,
        seconds,
    )
    return slot


async def slots_of(pool: asyncpg.Pool, schedule_id: UUID) -> list[datetime]:
    rows = await pool.fetch("SELECT scheduled_for FROM tasks WHERE schedule_id = $1 ORDER BY 1", schedule_id)
    return [r["scheduled_for"] for r in rows]


@pytest.mark.parametrize(
    ("catch_up", "runs"),
    [(CatchUp.NONE, 0), (CatchUp.LATEST, 1), (CatchUp.ALL, CATCH_UP_CAP)],
)
async def test_catch_up_after_downtime(
    schedules: ScheduleService, pool: asyncpg.Pool, catch_up: CatchUp, runs: int
) -> None:
    sid = await every_second(schedules, catch_up=catch_up, overlap=Overlap.ALLOW)
    await backdate(pool, sid, 600)  # ten minutes of missed one-second slots, the newest ones 0-1 s old
    await pool.execute("UPDATE schedules SET cron = NULL, every_seconds = 1 WHERE id = $1", sid)
    fired = await schedules.fire()
    assert fired is not None
    got = await slots_of(pool, sid)
    if catch_up is CatchUp.NONE:
        assert len(got) <= 1  # only a slot that is on time (the current second) runs: none of the missed
        assert all(datetime.now(UTC) - s < timedelta(seconds=5) for s in got)
    else:
        assert len(got) == runs
        assert got == sorted(got)
        assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(got))
    after = await schedules.repo.get(sid)
    assert after.next_run_at > datetime.now(UTC) - timedelta(seconds=1)  # moved past now: nothing fires twice
    assert (await schedules.fire()) is not None
    assert len(await slots_of(pool, sid)) <= len(got) + 1  # at most the one slot that came due since


async def test_overlap_skip_waits_for_the_last_run_and_allow_does_not(
    schedules: ScheduleService, pool: asyncpg.Pool
) -> None:
    skip = await every_second(schedules, "skip", catch_up=CatchUp.ALL)
    allow = await every_second(schedules, "allow", catch_up=CatchUp.ALL, overlap=Overlap.ALLOW)
    for sid in (skip, allow):
        await backdate(pool, sid, 5)
    await schedules.fire()
    assert len(await slots_of(pool, skip)) == 1  # one run at a time: the newest slot only
    assert len(await slots_of(pool, allow)) == 6
    for sid in (skip, allow):
        await backdate(pool, sid, 3)
    await schedules.fire()
    assert len(await slots_of(pool, skip)) == 1  # its run is still queued: the due slots are skipped
    await pool.execute("UPDATE tasks SET status = 'succeeded', finished_at = now() WHERE schedule_id = $1", skip)
    await asyncio.sleep(1.1)  # a slot that has no task yet
    await backdate(pool, skip, 0)
    await schedules.fire()
    assert len(await slots_of(pool, skip)) == 2  # terminal: the next slot runs


async def test_several_leaders_at_once_store_one_task_per_slot(
    schedules: ScheduleService, settings: Settings, pool: asyncpg.Pool
) -> None:
    """Without the leader lock (as if two leaders overlapped): the unique index alone holds."""
    sids = [await every_second(schedules, f"s{i}", catch_up=CatchUp.ALL, overlap=Overlap.ALLOW) for i in range(5)]
    pools = [await create_pool(settings.database_url, max_size=2) for _ in range(4)]
    try:
        for _ in range(3):
            for sid in sids:
                await backdate(pool, sid, 20)

            async def one_pass(p: asyncpg.Pool) -> None:
                async with p.acquire() as conn, conn.transaction():
                    await ScheduleRepository(p).fire_due(conn, limit=100)

            await asyncio.gather(*(one_pass(p) for p in pools))
    finally:
        for p in pools:
            await p.close()
    dupes = await pool.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE schedule_id IS NOT NULL"
        " GROUP BY schedule_id, scheduled_for HAVING count(*) > 1) d"
    )
    assert dupes == 0
    for sid in sids:
        assert len(await slots_of(pool, sid)) >= 21


async def test_only_one_process_leads_the_schedules(schedules: ScheduleService, settings: Settings) -> None:
    async with schedules.repo.leading() as conn:
        assert conn is not None
        other = await create_pool(settings.database_url, max_size=1)
        try:
            assert await ScheduleService(service=schedules.service, repo=ScheduleRepository(other)).fire() is None
        finally:
            await other.close()


async def test_trigger_runs_now_outside_the_slots(schedules: ScheduleService, queue: TaskQueue) -> None:
    sid = await every_second(schedules, paused=True)
    before = await schedules.repo.get(sid)
    task = await schedules.trigger(sid)
    assert task.schedule_id == sid
    assert task.scheduled_for is not None
    assert task.status.value == "queued"
    assert await queue.missing([task.id]) == []  # enqueued
    after = await schedules.repo.get(sid)
    assert after.next_run_at == before.next_run_at
    assert after.last_runs[0].task_id == task.id


# -- REST ------------------------------------------------------------------------------------


@pytest.fixture
async def api(make_client: Any, settings: Settings) -> httpx.AsyncClient:  # noqa: F811
    client: httpx.AsyncClient = await make_client(settings)
    return client


async def test_create_answers_the_next_three_runs(api: httpx.AsyncClient) -> None:
    body = {"name": "paris", "cron": "30 2 * * *", "timezone": "Europe/Paris", "task": TASK}
    created = await api.post(SCHEDULES, json=body)
    assert created.status_code == 201, created.text
    out = created.json()
    assert created.headers["location"] == f"{SCHEDULES}/{out['id']}"
    runs = [datetime.fromisoformat(r) for r in out["next_runs"]]
    assert len(runs) == 3
    assert runs == sorted(runs)
    assert all(r.utcoffset() == timedelta(0) for r in runs)
    assert out["overlap"] == "skip"
    assert out["catch_up"] == "latest"
    assert out["paused"] is False
    assert out["task"]["queue"] == "default"
    assert out["task"]["max_retries"] >= 0
    listed = (await api.get(SCHEDULES)).json()["items"]
    assert [s["id"] for s in listed] == [out["id"]]
    assert (await api.get(f"{SCHEDULES}/{out['id']}")).json()["next_runs"] == out["next_runs"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "*/5 * * *"}, "cron"),
        ({"cron": "99 * * * *"}, "cron"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"every_seconds": 30}, "cron"),  # both cron and every_seconds
        ({"cron": None}, "cron"),  # neither
        ({"cron": None, "every_seconds": 0}, "every_seconds"),
        ({"task": {"task_type": "no.such.type", "payload": {}}}, "task.task_type"),
        ({"task": {"task_type": "test", "payload": {"message": 5}}}, "task.payload.message"),
        ({"task": {"task_type": "test", "payload": {}, "queue": "Bad Queue"}}, "task.queue"),
        ({"task": {"task_type": "test", "payload": {}, "limit_keys": ["a", "a"]}}, "task.limit_keys"),
        ({"overlap": "sometimes"}, "overlap"),
        ({"catch_up": "everything"}, "catch_up"),
        ({"name": "has space"}, "name"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_schedules_are_422_naming_the_field_and_store_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, change: dict[str, Any], field: str
) -> None:
    body = {"name": "bad", "cron": "*/5 * * * *", "task": TASK} | change
    body = {k: v for k, v in body.items() if not (k == "cron" and v is None)}
    response = await api.post(SCHEDULES, json=body)
    problem = assert_problem(response, 422)
    named = {e["field"] for e in problem["errors"]}
    assert any(n == field or n.startswith(f"{field}.") for n in named), (field, problem["errors"])
    assert await pool.fetchval("SELECT count(*) FROM schedules") == 0


async def test_duplicate_name_is_409_and_unknown_id_404(api: httpx.AsyncClient) -> None:
    body = {"name": "once", "every_seconds": 60, "task": TASK}
    assert (await api.post(SCHEDULES, json=body)).status_code == 201
    assert_problem(await api.post(SCHEDULES, json=body | {"every_seconds": 30}), 409, "name")
    missing = f"{SCHEDULES}/00000000-0000-4000-8000-000000000000"
    for response in (
        await api.get(missing),
        await api.patch(missing, json={"paused": True}),
        await api.delete(missing),
        await api.post(f"{missing}/trigger"),
    ):
        assert_problem(response, 404)


async def test_patch_pause_resume_trigger_delete(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    out = (await api.post(SCHEDULES, json={"name": "p", "every_seconds": 60, "task": TASK})).json()
    url = f"{SCHEDULES}/{out['id']}"
    patched = await api.patch(url, json={"cron": "0 * * * *", "timezone": "Asia/Kolkata"})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["cron"] == "0 * * * *"
    assert body["every_seconds"] is None
    assert all(datetime.fromisoformat(r).minute == 30 for r in body["next_runs"])  # UTC+05:30
    assert_problem(await api.patch(url, json={"every_seconds": 0}), 422, "every_seconds")
    assert_problem(await api.patch(url, json={"name": None}), 422, "name")
    bad_task = {"task": {"task_type": "test", "payload": {"message": 7}}}
    assert_problem(await api.patch(url, json=bad_task), 422, "task.payload.message")  # re-validated
    other = {"name": "other", "every_seconds": 60, "task": TASK}
    assert (await api.post(SCHEDULES, json=other)).status_code == 201
    assert_problem(await api.patch(url, json={"name": "other"}), 409, "name")
    assert (await api.get(url)).json()["cron"] == "0 * * * *"  # a rejected change changed nothing

    paused = (await api.post(f"{url}/pause")).json()
    assert paused["paused"] is True
    assert paused["next_runs"] == []
    assert (await api.post(f"{url}/resume")).json()["paused"] is False

    triggered = await api.post(f"{url}/trigger")
    assert triggered.status_code == 202, triggered.text
    task = triggered.json()
    assert task["schedule_id"] == out["id"]
    assert task["scheduled_for"] is not None
    runs = (await api.get("/api/v1/tasks", params={"schedule_id": out["id"]})).json()["items"]
    assert [t["id"] for t in runs] == [task["id"]]
    assert (await api.get(url)).json()["last_runs"][0]["task_id"] == task["id"]

    assert (await api.delete(url)).status_code == 204
    assert_problem(await api.get(url), 404)
    assert await pool.fetchval("SELECT schedule_id FROM tasks WHERE id = $1", UUID(task["id"])) == UUID(out["id"])


async def test_writes_need_admin_and_reads_tasks_read(
    make_client: Any,  # noqa: F811
    settings: Settings,
) -> None:
    keys = {"reader": "tf_test_reader_key_0123456789abcdef", "writer": "tf_test_writer_key_0123456789abcdef"}
    scoped = make_settings(
        settings.database_url,
        settings.queue_name,
        api_keys=[
            {"name": "reader", "sha256": hashlib.sha256(keys["reader"].encode()).hexdigest(), "scopes": ["tasks:read"]},
            {
                "name": "writer",
                "sha256": hashlib.sha256(keys["writer"].encode()).hexdigest(),
                "scopes": ["tasks:read", "tasks:write"],
            },
        ],
    )
    client: httpx.AsyncClient = await make_client(scoped)
    for name in ("reader", "writer"):
        headers = {"Authorization": f"Bearer {keys[name]}"}
        assert (await client.get(SCHEDULES, headers=headers)).status_code == 200
        body = {"name": name, "every_seconds": 60, "task": TASK}
        assert (await client.post(SCHEDULES, json=body, headers=headers)).status_code == 403


async def fire_as_of(pool: asyncpg.Pool, now: datetime) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await ScheduleRepository(pool).fire_due(conn, limit=100, now=now)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cron", "since", "now", "expected"),
    [
        # spring forward in Paris (2026-03-29): the 02:30 run happens once, at 03:00 CEST
        (
            "30 2 * * *",
            utc(2026, 3, 27),
            utc(2026, 3, 31),
            [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
        ),
        # fall back (2026-10-25): once, at the first 02:30 (CEST)
        (
            "30 2 * * *",
            utc(2026, 10, 23),
            utc(2026, 10, 27),
            [utc(2026, 10, 23, 0, 30), utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        # a wildcard expression follows the wall clock: the repeated hour's slots twice
        (
            "*/30 2 * * *",
            utc(2026, 10, 24, 23),
            utc(2026, 10, 25, 2),
            [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 30)],
        ),
        # ... and the skipped hour has none
        ("*/30 2 * * *", utc(2026, 3, 28, 12), utc(2026, 3, 29, 12), []),
    ],
)
async def test_dst_slots_fired_in_postgresql(
    schedules: ScheduleService,
    pool: asyncpg.Pool,
    cron: str,
    since: datetime,
    now: datetime,
    expected: list[datetime],
) -> None:
    spec = ScheduleInput(
        name="paris",
        task=TaskRequest(task_type="test", payload={"message": "dst"}),
        cron=cron,
        timezone="Europe/Paris",
        catch_up=CatchUp.ALL,
        overlap=Overlap.ALLOW,
    )
    sid = (await schedules.create(spec)).id
    await pool.execute("UPDATE schedules SET next_run_at = $2 WHERE id = $1", sid, since)
    await fire_as_of(pool, now)
    assert await slots_of(pool, sid) == expected
    assert (await schedules.repo.get(sid)).next_run_at > now
    await fire_as_of(pool, now)  # the same instant again: nothing more
    assert await slots_of(pool, sid) == expected


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        (CatchUp.NONE, []),  # the newest missed slot is 23.5 hours old: dropped
        (CatchUp.LATEST, [utc(2026, 3, 30, 0, 30)]),
        (CatchUp.ALL, [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]),
    ],
)
async def test_catch_up_rules_fired_in_postgresql(
    schedules: ScheduleService, pool: asyncpg.Pool, catch_up: CatchUp, expected: list[datetime]
) -> None:
    spec = ScheduleInput(
        name="daily",
        task=TaskRequest(task_type="test", payload={"message": "c"}),
        cron="30 2 * * *",
        timezone="Europe/Paris",
        catch_up=catch_up,
        overlap=Overlap.ALLOW,
    )
    sid = (await schedules.create(spec)).id
    await pool.execute("UPDATE schedules SET next_run_at = $2 WHERE id = $1", sid, utc(2026, 3, 27))
    await fire_as_of(pool, utc(2026, 3, 31))
    assert await slots_of(pool, sid) == expected
    assert (await schedules.repo.get(sid)).next_run_at == utc(2026, 3, 31, 0, 30)
    await fire_as_of(pool, utc(2026, 3, 31, 0, 30, 20))  # on time (20 s late): runs under every rule
    assert (await slots_of(pool, sid))[-1] == utc(2026, 3, 31, 0, 30)
