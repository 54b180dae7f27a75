"""A few seconds of every Locust scenario against the real processes: the harness works and the
system answers it without a single failed request."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

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
