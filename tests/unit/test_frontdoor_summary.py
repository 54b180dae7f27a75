"""loadtest/frontdoor.py's verdicts: the ratio is the median of interleaved pairs, the targets judge
TaskFlow (not the ungrouped comparison), and a point whose API had no CPU is flagged starved."""

from __future__ import annotations

from typing import Any

from loadtest import frontdoor


def row(target: str, mode: str, repeat: int, per_s: float, **extra: Any) -> dict[str, Any]:
    return {
        "target": target,
        "mode": mode,
        "generator": "closed" if mode == "closed" else "openloop",
        "repeat": repeat,
        "connections": 4 if mode == "closed" else 64,
        "rate": 1000.0 if mode == "open" else None,
        "achieved_per_s": per_s,
        "p50_ms": 2.0,
        "p99_ms": extra.get("p99_ms", 10.0),
        "api_cpu_ms_per_request": 1.0,
        "api_cpu_share": extra.get("share", 0.95),
        "answered": 100,
        "unanswered": 0,
        "statuses": {"202": 100},
    }


def test_closed_ratio_is_the_median_of_the_pairs_and_judges_taskflow() -> None:
    rows = [
        row("taskflow", "closed", 0, 900),
        row("bare", "closed", 0, 1000),
        row("ungrouped", "closed", 0, 500),
        row("bare", "closed", 1, 800),
        row("taskflow", "closed", 1, 960),
        row("ungrouped", "closed", 1, 400),
    ]
    summary = frontdoor.summarise(rows)
    mine = next(c for c in summary["closed"] if c["target"] == "taskflow")
    assert mine["ratios"] == [0.9, 1.2]
    assert mine["ratio"] == 1.05
    assert summary["min_ratio"] == 1.05  # the ungrouped comparison (0.5) is not judged
    table = frontdoor.table(summary)
    assert "taskflow closed closed c=4" in table
    assert "ungrouped closed closed c=4" in table
    assert "met" in table


def test_open_loop_p99_at_1000_and_the_starved_flag() -> None:
    rows = [
        row("taskflow", "open", 0, 400, p99_ms=900.0, share=0.3),
        row("bare", "open", 0, 420, share=0.3),
    ]
    summary = frontdoor.summarise(rows)
    point = summary["open"][0]
    assert summary["p99_at_1000_ms"] == 900.0
    assert point["starved"]
    assert "API starved: 30% of a core" in frontdoor.table(summary)
    fed = frontdoor.summarise([row("taskflow", "open", 0, 1000, share=0.9), row("bare", "open", 0, 1000)])
    assert not fed["open"][0]["starved"]
