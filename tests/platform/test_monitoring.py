"""The chart's monitoring objects (global.metrics): what they scrape, that the rules and dashboard are the files'
own, that Prometheus may reach what it scrapes, and that none of it renders unless asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.platform._support import (
    CHART,
    ENV_NAMES,
    ENVIRONMENTS,
    Rendered,
    ToolError,
    env_value,
    explain,
    helm_env,
    helm_template,
    run,
    values_files,
)

pytestmark = pytest.mark.timeout(600)  # the first test installs the tools when `make tools` has not

FILES = CHART / "files"
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
SCENARIO_VALUES = CHART / "ci" / "monitoring-values.yaml"


def _monitored(scenarios: dict[str, Rendered]) -> list[Rendered]:
    """Every rendering with the monitors on: staging and prod (base turns them on), and the ci/ scenario."""
    return [scenarios[name] for name in ("staging", "prod", "dev-monitoring")]


def _dashboards(rendered: Rendered) -> list[dict[str, Any]]:
    return [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-grafana-dashboard")]


def _pod_labels(rendered: Rendered, component: str) -> dict[str, str]:
    labels: dict[str, str] = rendered.one("Deployment", component)["spec"]["template"]["metadata"]["labels"]
    return labels


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of two values files: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _values(rendered: Rendered) -> dict[str, Any]:
    """global.metrics as the scenario sets it beyond the chart's defaults (base, and the ci/ file for the scenario)."""
    metrics: dict[str, Any] = yaml.safe_load((ENVIRONMENTS / "base" / "values.yaml").read_text())["global"]["metrics"]
    if rendered.name == "dev-monitoring":
        metrics = _merge(metrics, yaml.safe_load(SCENARIO_VALUES.read_text())["global"]["metrics"])
    return metrics


def test_service_monitor_scrapes_the_api_metrics_path(scenarios: dict[str, Rendered]) -> None:
    for rendered in _monitored(scenarios):
        (monitor,) = rendered.of_kind("ServiceMonitor")
        service = rendered.one("Service", "api")
        spec = monitor["spec"]
        # It selects the API Service, and only that Service, in the release's namespace ...
        selected = [
            s for s in rendered.of_kind("Service")
            if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]  # fmt: skip
        assert selected == [service], f"{rendered.name}: the ServiceMonitor selects {selected}"
        assert spec["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
        # ... whose port it names, which leads to the API container's http port, and GET /metrics there.
        (endpoint,) = spec["endpoints"]
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        container = rendered.one("Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
        assert port["targetPort"] in {p["name"] for p in container["ports"]}
        assert endpoint["path"] == "/metrics"
        assert service["spec"]["selector"].items() <= _pod_labels(rendered, "api").items()


def test_pod_monitor_scrapes_every_worker_metrics_port(scenarios: dict[str, Rendered]) -> None:
    for rendered in _monitored(scenarios):
        (monitor,) = rendered.of_kind("PodMonitor")
        spec = monitor["spec"]
        selector = spec["selector"]["matchLabels"].items()
        assert not selector <= _pod_labels(rendered, "api").items(), f"{rendered.name}: the PodMonitor scrapes the API"
        assert spec["namespaceSelector"] == {"matchNames": [monitor["metadata"]["namespace"]]}
        (endpoint,) = spec["podMetricsEndpoints"]
        assert endpoint["port"] == "metrics"
        assert endpoint["path"] == "/metrics"
        # Every pool's pods, their series labelled with the pool (the dashboard's per-pool panel groups by it).
        pools = rendered.pools("Deployment")
        assert len(pools) >= 2, rendered.name
        assert endpoint["relabelings"] == [
            {"sourceLabels": ["__meta_kubernetes_pod_label_taskflow_pool"], "targetLabel": "pool"}
        ]
        for pool, deployment in pools.items():
            pod = deployment["spec"]["template"]["metadata"]["labels"]
            assert selector <= pod.items(), f"{rendered.name}: the PodMonitor misses pool {pool}"
            assert pod["taskflow/pool"] == pool
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert str(ports["metrics"]) == env_value(container, "TASKFLOW_WORKER_METRICS_PORT")


def test_monitors_carry_the_operator_selector_labels_and_settings(scenarios: dict[str, Rendered]) -> None:
    for rendered in _monitored(scenarios):
        values = _values(rendered)
        for kind in MONITORING_KINDS:
            (obj,) = rendered.of_kind(kind)
            assert values["labels"].items() <= obj["metadata"]["labels"].items(), f"{rendered.name} {kind}"
        (api,) = rendered.of_kind("ServiceMonitor")[0]["spec"]["endpoints"]
        (worker,) = rendered.of_kind("PodMonitor")[0]["spec"]["podMetricsEndpoints"]
        for endpoint, key in ((api, "serviceMonitor"), (worker, "podMonitor")):
            expected = {"interval": "30s", "scrapeTimeout": "10s", **values[key]}
            assert {k: endpoint[k] for k in ("interval", "scrapeTimeout")} == {
                k: expected[k] for k in ("interval", "scrapeTimeout")
            }, f"{rendered.name} {key}"


def test_prometheus_rule_is_the_rules_file(scenarios: dict[str, Rendered]) -> None:
    """The chart renders files/prometheus-rules.yaml's spec unchanged: every alert, expression and annotation."""
    source = yaml.safe_load((FILES / "prometheus-rules.yaml").read_text())
    alerts = {r["alert"] for g in source["spec"]["groups"] for r in g["rules"]}
    assert len(alerts) >= 4
    for rendered in _monitored(scenarios):
        (rule,) = rendered.of_kind("PrometheusRule")
        assert rule["spec"] == source["spec"], f"{rendered.name}: the PrometheusRule differs from the rules file"
        assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} == alerts


def test_dashboard_configmap_carries_the_dashboard_json(scenarios: dict[str, Rendered]) -> None:
    source = json.loads((FILES / "grafana-dashboard.json").read_text())
    for rendered in _monitored(scenarios):
        values = _values(rendered)["grafanaDashboard"]
        (config,) = _dashboards(rendered)
        assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config["metadata"]["namespace"] == (values.get("namespace") or f"taskflow-{rendered.name}")
        assert config["metadata"].get("annotations", {}) == values.get("annotations", {})
        (text,) = config["data"].values()
        assert json.loads(text) == source


def test_prometheus_may_reach_what_it_scrapes(scenarios: dict[str, Rendered]) -> None:
    """With a monitor on, the component's NetworkPolicy admits global.metrics.scrapeFrom to the scraped port."""
    for rendered in _monitored(scenarios):
        default = yaml.safe_load((CHART / "values.yaml").read_text())["global"]["metrics"]["scrapeFrom"]
        scrape_from = _values(rendered).get("scrapeFrom", default)
        for component, port in (("api", "http"), ("worker", "metrics")):
            ingress = rendered.one("NetworkPolicy", component)["spec"]["ingress"]
            admitted = [rule["from"] for rule in ingress if [p["port"] for p in rule["ports"]] == [port]]
            assert scrape_from in admitted, f"{rendered.name}: Prometheus cannot reach {component}:{port}"


def test_nothing_is_rendered_by_default(tools: dict[str, Path], scenarios: dict[str, Rendered]) -> None:
    """The chart's own defaults, and dev, render no monitoring object, and the worker admits no one."""
    proc = run(
        [tools["helm"], "template", "taskflow", CHART, "--set", "global.secrets.existingSecret=taskflow-secrets",
         "--set", "global.networkPolicy.postgresql.to[0].ipBlock.cidr=10.0.0.0/24",
         "--set", "global.networkPolicy.redis.to[0].ipBlock.cidr=10.0.1.0/24"],
        env=helm_env(),
    )  # fmt: skip
    assert proc.returncode == 0, explain(proc)
    defaults = Rendered("defaults", proc.stdout)
    for rendered in (defaults, scenarios["dev"]):
        kinds = {o["kind"] for o in rendered.objects}
        assert not kinds & MONITORING_KINDS, f"{rendered.name} renders {kinds & MONITORING_KINDS}"
        assert not _dashboards(rendered), rendered.name
        assert rendered.one("NetworkPolicy", "worker")["spec"]["ingress"] == [], rendered.name
        api_ports = [p["port"] for r in rendered.one("NetworkPolicy", "api")["spec"]["ingress"] for p in r["ports"]]
        assert api_ports == ["http"], f"{rendered.name}: one ingress rule, the API's callers"


def test_staging_and_prod_monitor_and_dev_does_not(scenarios: dict[str, Rendered]) -> None:
    """The Prometheus Operator is a prerequisite of the AKS environments (docs/deploy.md), not of a laptop cluster."""
    for env in ENV_NAMES:
        kinds = {o["kind"] for o in scenarios[env].objects} & MONITORING_KINDS
        assert kinds == (set() if env == "dev" else MONITORING_KINDS), f"{env}: {kinds}"
        assert len(_dashboards(scenarios[env])) == (0 if env == "dev" else 1), env


def test_helm_lint_strict_with_monitoring_on(tools: dict[str, Path]) -> None:
    cmd: list[str | Path] = [tools["helm"], "lint", "--strict", CHART]
    for path in (*values_files("dev"), SCENARIO_VALUES):
        cmd += ["--values", path]
    proc = run(cmd, env=helm_env())
    assert proc.returncode == 0, explain(proc)
    assert "0 chart(s) failed" in proc.stdout, explain(proc)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--set", "global.metrics.podMonitor.enabled=true", "--set-json", "global.metrics.scrapeFrom=[]"],
         "global.metrics.scrapeFrom"),
        (["--set", "global.metrics.serviceMonitor.enabled=true", "--set-json", "global.metrics.scrapeFrom=[]"],
         "global.metrics.scrapeFrom"),
        (["--set", "global.metrics.serviceMonitor.interval=30"], "interval"),
        (["--set", "global.metrics.prometheusRule.enable=true"], "enable"),
        (["--set", "global.metrics.grafanaDashboard.labels.grafana_dashboard=1"], "grafana_dashboard"),
    ],
)  # fmt: skip
def test_bad_monitoring_values_are_refused_by_name(tools: dict[str, Path], override: list[str], message: str) -> None:
    with pytest.raises(ToolError) as refused:
        helm_template(tools["helm"], "dev", *override)
    assert message in str(refused.value), f"the error for {override} does not name {message!r}:\n{refused.value}"


def _rule(alert: str) -> dict[str, Any]:
    source = yaml.safe_load((FILES / "prometheus-rules.yaml").read_text())
    (rule,) = [r for g in source["spec"]["groups"] for r in g["rules"] if r.get("alert") == alert]
    return rule  # type: ignore[no-any-return]


def test_a_queue_without_live_workers_alerts_per_queue() -> None:
    """Tasks due in a queue that no live worker consumes (a typo in a submitter, a pool that is down or never woke)
    fire TaskflowQueueWithoutWorkers for that queue, after a few minutes (a pool KEDA wakes from zero is not
    stranded), with a runbook naming where queues are configured and what to look at."""
    rule = _rule("TaskflowQueueWithoutWorkers")
    expr = " ".join(rule["expr"].split())
    # Per queue on both sides (one alert per stranded queue; max: every API pod exports the same gauges), and
    # "unless ... > 0" so a queue whose workers gauge is missing altogether still fires.
    assert expr == ("max by (queue) (taskflow_queue_due) > 0 unless max by (queue) (taskflow_queue_workers) > 0"), expr
    minutes = int(rule["for"].removesuffix("m"))
    assert 2 <= minutes <= 15, rule["for"]
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert "{{ $labels.queue }}" in rule["annotations"]["summary"]
    runbook = rule["annotations"]["description"]
    for clue in ("TASKFLOW_WORKER_QUEUES", "worker.pools", "taskflow/pool", "/api/v1/tasks?queue=", "ScaledObject"):
        assert clue in runbook, f"the runbook does not mention {clue}"
    # docs/operations.md lists every alert with what to look at.
    assert "`TaskflowQueueWithoutWorkers`" in (CHART.parents[2] / "docs" / "operations.md").read_text()


def test_dashboard_shows_load_and_workers_per_queue() -> None:
    dashboard = json.loads((FILES / "grafana-dashboard.json").read_text())
    exprs = {t["expr"] for panel in dashboard["panels"] for t in panel["targets"]}
    assert {
        "max by (queue) (taskflow_queue_due)",
        "max by (queue) (taskflow_queue_running)",
        "max by (queue) (taskflow_queue_workers)",
    } <= exprs
    # The per-pool series carry `pool`, which the PodMonitor relabels from the pods' taskflow/pool.
    assert any("by (pool)" in e for e in exprs)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
