"""The two images, built from apps/*/Dockerfile by podman and run against the test PostgreSQL and Redis: a task
submitted to the API container is run by the worker container, both as a non-root user, both healthy by their own
HEALTHCHECK, both stopping on SIGTERM within their grace period."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx

from images import (  # scripts/, on sys.path by the conftest
    RUN_FLAGS,
    SIZE_BUDGET_BYTES,
    base_image,
    image_size,
    largest_packages,
)
from loadtest.procs import free_port
from taskcore.queue import connect
from taskcore.store import create_pool
from tests.conftest import (
    AUTH_HEADERS,
    REDIS_URL,
    TEST_API_KEYS,
    all_task_ids,
    database_url,
    drop_database,
    purge_queue,
)
from tests.containers.conftest import Engine, Images, report, unique

WORKER_GRACE_SECONDS = 5  # TASKFLOW_WORKER_SHUTDOWN_GRACE_SECONDS
STOP_TIMEOUT_SECONDS = 20  # podman stop's SIGKILL deadline, well past both graces
STARTUP_SECONDS = 60


def _healthy(engine: Engine, name: str) -> str:
    """Run the image's HEALTHCHECK now (podman schedules it with systemd timers, absent here) and read the verdict."""
    engine("healthcheck", "run", name, check=False)
    state = engine.inspect(name)["State"]
    health = state.get("Health") or state.get("Healthcheck") or {}
    return str(health.get("Status", ""))


def _wait_healthy(engine: Engine, name: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while (status := _healthy(engine, name)) != "healthy":
        if engine.inspect(name)["State"]["Status"] != "running":
            raise AssertionError(f"{name} exited: {engine.logs(name)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} not healthy within {STARTUP_SECONDS}s ({status}): {engine.logs(name)}")
        time.sleep(0.5)


def _stop(engine: Engine, name: str) -> tuple[float, int]:
    """SIGTERM (the images' stop signal) through `podman stop`; the seconds it took and the exit code."""
    started = time.monotonic()
    engine("stop", "--time", str(STOP_TIMEOUT_SECONDS), name, timeout=STOP_TIMEOUT_SECONDS + 30)
    return time.monotonic() - started, int(engine.inspect(name)["State"]["ExitCode"])


def _report_sizes(engine: Engine, images: Images) -> None:
    report(f"images built in {images.build_seconds:.1f} s")
    base = base_image()
    report(f"base {base}: {image_size(engine.cmd, base) / 1e6:.0f} MB (the larger part of both images)")
    for built in (images.api, images.worker):
        top = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in largest_packages(engine.cmd, built.ref))
        report(f"{built.ref}: {built.size / 1e6:.0f} MB; largest site-packages: {top}")


async def test_images_run_a_task_as_non_root_and_stop_on_sigterm(engine: Engine, images: Images) -> None:
    _report_sizes(engine, images)
    for built in (images.api, images.worker):
        assert built.size < SIZE_BUDGET_BYTES, f"{built.ref} is {built.size / 1e6:.0f} MB"

    tag = uuid.uuid4().hex[:10]
    database = f"taskflow_containers_{tag}"
    api_port, metrics_port = free_port(), free_port()
    env = {
        "TASKFLOW_ENV": "test",
        "TASKFLOW_DATABASE_URL": database_url(database),
        "TASKFLOW_REDIS_URL": REDIS_URL,
        "TASKFLOW_QUEUE_NAME": f"taskflow-containers:{tag}",
        "TASKFLOW_API_KEYS": json.dumps(TEST_API_KEYS),
        "TASKFLOW_API_PORT": str(api_port),
        "TASKFLOW_LEASE_SECONDS": "3",
        "TASKFLOW_WORKER_SHUTDOWN_GRACE_SECONDS": str(WORKER_GRACE_SECONDS),
        "TASKFLOW_WORKER_METRICS_PORT": str(metrics_port),
        "TASKFLOW_WORKER_METRICS_HOST": "127.0.0.1",
    }
    try:
        # The migrations, from the API image as Compose and the chart's Job run them (they create the database).
        migrate = engine("run", "--rm", *RUN_FLAGS, *_env(env), "--entrypoint", "taskflow-migrate", images.api.ref)
        assert "migration applied" in migrate.stdout + migrate.stderr, migrate.stderr
        api = engine.run_detached(images.api.ref, unique("taskflow-test-api"), env)
        worker = engine.run_detached(images.worker.ref, unique("taskflow-test-worker"), env)

        for name in (api, worker):
            uid = engine("exec", name, "python", "-c", "import os; print(os.getuid(), os.getgid())").stdout.split()
            assert uid == ["10001", "10001"], f"{name} runs as {uid}"
            assert engine.inspect(name)["Config"]["User"] == "10001:10001"
        _wait_healthy(engine, api)
        _wait_healthy(engine, worker)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", headers=AUTH_HEADERS, timeout=10) as c:
            answer = await c.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": "from a box"}})
            assert answer.status_code == 202, answer.text
            done = await _wait_status(c, answer.json()["id"], "succeeded")
            assert done["result"] == {"echo": {"message": "from a box"}, "attempt": 1}, done

            # A task running when the worker is told to stop finishes within the grace, then the worker exits.
            answer = await c.post("/api/v1/tasks", json={"task_type": "sleep", "payload": {"seconds": 1.5}})
            sleeping = answer.json()["id"]
            await _wait_status(c, sleeping, "running")
            seconds, code = _stop(engine, worker)
            assert code == 0, f"worker exit code {code} after {seconds:.1f}s: {engine.logs(worker)}"
            assert seconds < WORKER_GRACE_SECONDS + 3, f"worker took {seconds:.1f}s to stop"
            assert (await c.get(f"/api/v1/tasks/{sleeping}")).json()["status"] == "succeeded"
            report(f"worker stopped on SIGTERM in {seconds:.1f} s (grace {WORKER_GRACE_SECONDS} s), exit {code}")

        seconds, code = _stop(engine, api)
        assert code == 0, f"API exit code {code} after {seconds:.1f}s: {engine.logs(api)}"
        assert seconds < 10, f"API took {seconds:.1f}s to stop (uvicorn's graceful shutdown)"
        report(f"API stopped on SIGTERM in {seconds:.1f} s, exit {code}")
    finally:
        engine.remove_all()
        await _cleanup(database, env["TASKFLOW_QUEUE_NAME"])


def _env(env: dict[str, str]) -> list[str]:
    return [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]


async def _wait_status(client: httpx.AsyncClient, task_id: str, status: str, within: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + within
    while True:
        body: dict[str, object] = (await client.get(f"/api/v1/tasks/{task_id}")).json()
        if body["status"] == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} not {status} within {within}s: {body}")
        await asyncio.sleep(0.1)


async def _cleanup(database: str, queue_name: str) -> None:
    try:
        pool = await create_pool(database_url(database))
    except Exception:  # noqa: BLE001 - the migration never created it
        return
    redis = connect(REDIS_URL, queue_name=queue_name)
    try:
        await purge_queue(redis, queue_name, await all_task_ids(pool))
    finally:
        await redis.aclose(close_connection_pool=True)
        await pool.close()
        await drop_database(database)
