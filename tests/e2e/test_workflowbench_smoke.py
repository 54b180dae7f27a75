"""`make bench`'s fan-out/fan-in step, small: it runs a workflow to succeeded on its own processes
and reports the times and rate the bench table prints."""

from __future__ import annotations

import pytest

from loadtest import workflowbench

pytestmark = pytest.mark.e2e


def test_the_fan_out_fan_in_graph_has_one_root_and_one_join() -> None:
    steps = workflowbench.fan_out_fan_in(1000)
    assert len(steps) == 1000
    assert steps[0]["ref"] == "root"
    assert all(s["depends_on"] == ["root"] for s in steps[1:-1])
    assert len(steps[-1]["depends_on"]) == 998


@pytest.mark.timeout(240)
async def test_a_small_fan_out_fan_in_run_reports_its_rate() -> None:
    from argparse import Namespace

    results = await workflowbench._alone(Namespace(steps=20, rounds=1))
    (result,) = results
    assert result["steps"] == 20
    assert result["seconds"] > 0
    assert result["steps_per_s"] == pytest.approx(20 / result["seconds"])
    assert result["fan_in_wait_ms"] >= 0
