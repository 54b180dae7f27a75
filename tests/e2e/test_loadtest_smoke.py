"""A few seconds of every Locust scenario, and of the open-loop latency generator, against the
real processes: the harnesses work and the system answers them without a single failed request."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from loadtest import latency
from tests.e2e._helpers import count_tasks
from tests.e2e.conftest import ROOT, Stack

pytestmark = pytest.mark.e2e

LOCUST = Path(sys.executable).parent / "locust"
CLASSES = ["SteadySubmitter", "BurstSubmitter", "MixedUser", "Reader", "FixedRateSubmitter"]


async def test_locust_smoke(stack: Stack, tmp_path: Path) -> None:
    prefix = tmp_path / "smoke"
    env = {**stack.env, "TASKFLOW_LOAD_HEADERS": json.dumps(stack.headers), "TASKFLOW_LOAD_BATCH": "20"}
    argv = [str(LOCUST), "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless", "--host", stack.url]
    argv += [
        "-u",
        "10",
        "-r",
        "10",
        "-t",
        "5s",
        "--stop-timeout",
        "10",
        "--only-summary",
        "--csv",
        str(prefix),
        *CLASSES,
    ]
    done = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    with (tmp_path / "smoke_stats.csv").open() as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    total = rows.pop("Aggregated")
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0, (tmp_path / "smoke_failures.csv").read_text()
    assert any(name.startswith("/api/v1/tasks [") for name in rows)  # submits happened
    assert "/api/v1/tasks/batch" in rows


async def test_open_loop_latency_measurement(stack: Stack, db: asyncpg.Pool) -> None:
    """One step of `make bench`'s latency sweep: every scheduled submit is sent, answered 202 and
    stored, and the report carries the percentiles and the CPU each party used."""
    assert stack.api is not None
    before = await count_tasks(db)
    rate, seconds = 40.0, 1.0
    result = await latency.measure(
        "openloop",
        url=stack.url,
        rate=rate,
        seconds=seconds,
        api_pid=stack.api.pid,
        database_url=stack.env["TASKFLOW_DATABASE_URL"],
        redis_url=stack.env["TASKFLOW_REDIS_URL"],
        headers=stack.headers,
    )
    measured = int(rate * seconds)
    assert (result["requests"], result["answered"], result["unanswered"]) == (measured, measured, 0)
    assert result["statuses"] == {"202": measured}
    assert result["errors"] == {}
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["api_cpu_ms_per_request"] > 0
    assert result["generator_cpu_ms_per_request"] > 0
    # The warm-up second is sent too, and not counted in the percentiles.
    assert await count_tasks(db) == before + 2 * measured
    assert "openloop" in latency.describe(result)


def test_open_loop_generator_refuses_a_non_loopback_target() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.openloop", "--url", "http://192.0.2.1:80", "--rate", "1", "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode != 0
    assert "only loopback addresses" in done.stderr
