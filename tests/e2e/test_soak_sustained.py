"""A minute of `make soak-sustained` (loadtest/soak_sustained.py): the real API and a worker at a small
fixed rate (TASKFLOW_SOAK_SUSTAINED_RATE, default 20/s: the machine is shared), with a 15-second retention
so that the reconciler purges all along, and a reader. Nothing is lost (the ledger: every accepted submit
succeeded, stored or purged since), the purge keeps the table's rows and bytes bounded, the readers are answered.
No wall-clock speed is asserted."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

RATE = float(os.environ.get("TASKFLOW_SOAK_SUSTAINED_RATE", "20"))
SECONDS = float(os.environ.get("TASKFLOW_SOAK_SUSTAINED_SECONDS", "60"))


@pytest.mark.timeout(240 + SECONDS)
async def test_a_minute_at_a_steady_rate_loses_nothing_and_stays_bounded(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    argv = [sys.executable, "-m", "loadtest.soak_sustained", "--minutes", f"{SECONDS / 60:g}", "--window", "10"]
    argv += ["--rate", f"{RATE:g}", "--retention-seconds", "15", "--reconcile-interval", "1", "--read-rate", "4"]
    argv += ["--connections", "16", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFLOW_")}
    done = await asyncio.to_thread(
        subprocess.run, argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180 + SECONDS
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    windows = report["windows"]
    assert len(windows) == round(SECONDS / 10)
    assert "first window" in done.stdout
    assert "no task lost:" in done.stdout

    ledger = report["ledger"]
    assert ledger["sent"] == len(windows) * round(RATE * 10)
    assert ledger["accepted"] == ledger["sent"], ledger  # no 429/503 at this rate
    assert ledger["no_task_lost"], ledger
    assert ledger["lost"] == 0, ledger
    assert ledger["not_succeeded"] == 0, ledger
    assert report["left_after_drain"] == 0
    # Retention ran during the soak, and only finished tasks were purged.
    assert ledger["purged"].get("succeeded", 0) > 0, ledger
    assert set(ledger["purged"]) == {"succeeded"}, ledger
    assert sum(w["purged"] for w in windows) > 0

    # Bounded: once retention kicks in, the rows stay at about rate * (retention + a pass), not growing.
    bounded = report["bounded"]
    assert bounded["verdict"] is not None, bounded
    assert bounded["rows_ok"], bounded
    assert bounded["rows_at_end"] <= 1.5 * bounded["rows_at_kick_in"] + RATE * 5, bounded
    assert windows[-1]["rows"] <= RATE * (15 + 1 + 10) * 2, windows[-1]
    # Bytes too, with vacuum running (autovacuum, or the harness at its thresholds where the server has it off).
    assert bounded["tasks_vacuums"] > 0, bounded
    assert bounded["tasks_total_bytes_at_end"] <= 2 * bounded["tasks_total_bytes_at_kick_in"], bounded
    # Sizes are measured for every table, tasks with its indexes.
    tasks = windows[-1]["sizes"]["tasks"]
    assert tasks["total"] >= tasks["heap"] + tasks["indexes"] > 0
    # The reader was answered (a purged task's 404 counts as answered right).
    assert sum(w["reads"] for w in windows) > 0
    assert sum(w["read_errors"] for w in windows) == 0
    assert all(w["finished"] > 0 for w in windows)
