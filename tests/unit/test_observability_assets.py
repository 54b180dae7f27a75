"""The alert rules and the dashboard only use metrics TaskFlow exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from taskflow_api.metrics import ApiMetrics
from taskflow_worker.metrics import WorkerMetrics

# Inside the chart, which renders them (Helm reads only files under the chart); platform/observability/ points here.
ASSETS = Path(__file__).resolve().parents[2] / "platform" / "helm" / "taskflow" / "files"
METRIC = re.compile(r"\btaskflow_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported() -> set[str]:
    names = set()
    for metrics in (ApiMetrics(), WorkerMetrics()):
        for family in metrics.registry.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
    # The API's queue gauges exist once a snapshot was taken; they are declared here.
    names.update({"taskflow_queue_depth", "taskflow_queue_due", "taskflow_queue_oldest_due_age_seconds"})
    # Per queue (issue 13's contract): what the pools scale on and who consumes each queue.
    names.update({"taskflow_queue_running", "taskflow_queue_workers"})
    names.add("taskflow_workers_seen")
    return names


def used_in(text: str) -> set[str]:
    return set(METRIC.findall(text))


def test_alert_rules_use_exported_metrics() -> None:
    document = yaml.safe_load((ASSETS / "prometheus-rules.yaml").read_text())
    rules = [rule for group in document["spec"]["groups"] for rule in group["rules"]]
    assert {r["alert"] for r in rules} >= {
        "TaskflowBacklogTooOld",
        "TaskflowTaskFailureRatioHigh",
        "TaskflowNoWorkerHeartbeats",
        "TaskflowApiErrors",
        "TaskflowQueueWithoutWorkers",
    }
    names = exported()
    for rule in rules:
        for metric in used_in(rule["expr"]):
            assert metric in names or metric.removesuffix("_total") in names, (rule["alert"], metric)


def test_the_per_queue_gauges_are_declared_before_the_first_snapshot() -> None:
    names = {family.name for family in ApiMetrics().registry.collect()}
    assert {"taskflow_queue_due", "taskflow_queue_running", "taskflow_queue_workers", "taskflow_queue_paused"} <= names


def test_dashboard_panels_use_exported_metrics() -> None:
    dashboard = json.loads((ASSETS / "grafana-dashboard.json").read_text())
    names = exported()
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 8
    for expr in exprs:
        for metric in used_in(expr):
            base = next((metric.removesuffix(s) for s in SUFFIXES if metric.endswith(s)), metric)
            assert metric in names or base in names, metric
