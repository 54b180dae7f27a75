"""`make scale-test` in short: a scaled-down policy, a short burst, real API and worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.scale import Autoscaler, Policy, Pool, Sample, pool_verdict
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

SHORT_POLICY = {
    "min_replicas": 1,
    "max_replicas": 3,
    "target_per_replica": 20,
    "polling_interval": 1,
    "stabilization": 4,
}
# Two pools as the chart renders them, at a test's pace: short tasks into "quick" (two queues, weighted), long ones
# into "slow", which sleeps at zero replicas and must not be scaled down under its 6-second tasks.
SHORT_POOLS = [
    {
        "name": "quick",
        "queues": "urgent:3,quick:1",
        "concurrency": 5,
        "policy": {**SHORT_POLICY, "target_per_replica": 4},
    },
    {
        "name": "slow",
        "queues": "slow:1",
        "concurrency": 2,
        "policy": {**SHORT_POLICY, "min_replicas": 0, "max_replicas": 2, "target_per_replica": 2, "cooldown": 3},
    },
]


def test_the_autoscaler_scales_up_at_once_and_down_after_the_window() -> None:
    scaler = Autoscaler(Policy(**SHORT_POLICY))
    assert scaler.decide(0, 0) == 1
    assert scaler.decide(1, 45) == 3  # ceil(45 / 20), at once
    assert scaler.decide(2, 500) == 3  # never above the maximum
    assert scaler.decide(3, 10) == 3  # a lower wish waits for the stabilization window
    assert scaler.decide(6, 10) == 3
    assert scaler.decide(6.5, 0) == 1  # the window (4 s) holds only low wishes now


def test_a_pool_at_zero_wakes_on_load_and_sleeps_only_after_the_cooldown() -> None:
    scaler = Autoscaler(Policy(**{**SHORT_POLICY, "min_replicas": 0, "target_per_replica": 2.5, "cooldown": 10}))
    assert scaler.decide(0, 0) == 0  # idle from the start: zero
    assert scaler.decide(1, 1) == 1  # any load wakes it (KEDA's activation)
    assert scaler.decide(2, 6) == 3  # ceil(6 / 2.5)
    assert scaler.decide(3, 2) == 3  # running tasks are load: the window holds the replicas
    assert scaler.decide(8, 2) == 1  # the window has passed: what 2 tasks need
    assert scaler.decide(9, 0) == 1  # no load, but not for the cooldown yet
    assert scaler.decide(17.9, 0) == 1
    assert scaler.decide(18, 0) == 0  # 10 s after the last load


@pytest.mark.timeout(300)
def test_short_scale_run_keeps_every_promise(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "loadtest.scale", "--pools", json.dumps(SHORT_POOLS)]
    argv += ["--idle", "3", "--burst", "10", "--users", "2", "--batch", "30", "--sleep", "0.2", "--out", str(tmp_path)]
    argv += ["--streams", json.dumps({"slow": {"seconds": 6, "batch": 1, "every": 2}})]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=260)
    reports = list(tmp_path.glob("scale-*.json"))
    assert reports, done.stderr[-3000:]
    verdict = json.loads(reports[0].read_text())["verdict"]
    assert {name: result["ok"] for name, result in verdict.items()} == dict.fromkeys(verdict, True), (
        done.stdout,
        verdict,
    )
    assert {name.split(": ")[0] for name in verdict if ": " in name} == {"quick", "slow"}
    assert done.returncode == 0
    assert list(tmp_path.glob("scale-*.png"))


def test_a_pool_scaled_down_under_its_running_tasks_fails_the_verdict() -> None:
    """The promise the load signal exists for: running tasks never exceed what the live replicas hold."""
    pool = Pool.of(SHORT_POOLS[1])
    held = [Sample(t, load=2, running=2, replicas=1, succeeded=0) for t in range(5)]
    assert pool_verdict(pool, held, [])["held_running_tasks"]["ok"]
    dropped = [*held, Sample(5, load=0, running=2, replicas=0, succeeded=0)]
    result = pool_verdict(pool, dropped, [])["held_running_tasks"]
    assert not result["ok"]
    assert result["samples_short_of_slots"] == [{"t": 5, "load": 0, "running": 2, "replicas": 0, "succeeded": 0}]
