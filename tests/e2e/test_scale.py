"""`make scale-test` in short: a scaled-down policy, a short burst, real API and worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.scale import Autoscaler, Policy
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

SHORT_POLICY = {
    "min_replicas": 1,
    "max_replicas": 3,
    "target_due_per_replica": 20,
    "polling_interval": 1,
    "stabilization": 4,
}


def test_the_autoscaler_scales_up_at_once_and_down_after_the_window() -> None:
    scaler = Autoscaler(Policy(**SHORT_POLICY))
    assert scaler.decide(0, 0) == 1
    assert scaler.decide(1, 45) == 3  # ceil(45 / 20), at once
    assert scaler.decide(2, 500) == 3  # never above the maximum
    assert scaler.decide(3, 10) == 3  # a lower wish waits for the stabilization window
    assert scaler.decide(6, 10) == 3
    assert scaler.decide(6.5, 0) == 1  # the window (4 s) holds only low wishes now


@pytest.mark.timeout(240)
def test_short_scale_run_keeps_every_promise(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "loadtest.scale", "--policy", json.dumps(SHORT_POLICY)]
    argv += ["--idle", "3", "--burst", "10", "--users", "2", "--batch", "30", "--sleep", "0.2", "--out", str(tmp_path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=200)
    reports = list(tmp_path.glob("scale-*.json"))
    assert reports, done.stderr[-3000:]
    verdict = json.loads(reports[0].read_text())["verdict"]
    assert {name: result["ok"] for name, result in verdict.items()} == dict.fromkeys(verdict, True), (
        done.stdout,
        verdict,
    )
    assert done.returncode == 0
    assert list(tmp_path.glob("scale-*.png"))
