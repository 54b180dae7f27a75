"""The in-process worker profile (loadtest/profile_worker.py) drains real tasks end to end: every
task stored in a database of its own ends `succeeded` (the harness checks and fails otherwise),
and the raw arq baseline drains the same jobs; nothing is left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ADMIN_DATABASE_URL, REDIS_URL
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("extra", [[], ["--raw"]], ids=["taskflow", "raw-arq"])
def test_profile_worker_drains_every_task(extra: list[str]) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKFLOW_")},
        "TASKFLOW_BENCH_REDIS_URL": REDIS_URL,
        "TASKFLOW_BENCH_ADMIN_DATABASE_URL": ADMIN_DATABASE_URL,
    }
    argv = [sys.executable, "-m", "loadtest.profile_worker", "--jobs", "300", "--concurrency", "20", *extra]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    name = "raw arq" if extra else "TaskFlow"
    assert f"{name}: 300 jobs in" in done.stdout
    assert "ms/job" in done.stdout
