"""Worker pools (worker.pools): one Deployment, one ScaledObject or HPA and one PodDisruptionBudget per pool, each
pool's queues and slots in its pods' env, and its scaling signal (due + running of its queues) over one replica's
share (concurrency x targetUtilisation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.scale import pools_from_manifests
from tests.platform._support import (
    CHART,
    ENV_NAMES,
    Rendered,
    ToolError,
    env_value,
    helm_template,
    values_files,
)

pytestmark = pytest.mark.timeout(600)  # the first test installs the tools when `make tools` has not

HPA = ["--values", str(CHART / "ci" / "hpa-values.yaml")]
# Three pools on top of staging's values: weights, a fractional share (3 x 0.7 = 2.1, not 2.0999999999999996), the
# shared defaults, a pool with autoscaling off, per-pool overrides.
THREE_POOLS = [
    {
        "name": "mail",
        "queues": [{"name": "critical", "weight": 3}, {"name": "mail_out"}],
        "concurrency": 3,
        "autoscaling": {"targetUtilisation": 0.7, "minReplicas": 0},
    },
    {"name": "bulk", "queues": [{"name": "bulk-2"}], "concurrency": 50},
    {
        "name": "fixed",
        "queues": [{"name": "fixed", "weight": 1}],
        "concurrency": 1,
        "replicaCount": 4,
        "autoscaling": {"enabled": False},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        "nodeSelector": {"pool": "fixed"},
    },
]


def _pool_values(env: str) -> list[dict[str, Any]]:
    """worker.pools as the environment's values files set it: the last file that sets the list wins (Helm replaces
    lists, it does not merge them)."""
    pools: list[dict[str, Any]] = yaml.safe_load((CHART / "charts" / "worker" / "values.yaml").read_text())["pools"]
    for path in values_files(env):
        pools = ((yaml.safe_load(path.read_text()) or {}).get("worker") or {}).get("pools", pools)
    return pools


def _queues_env(pool: dict[str, Any]) -> str:
    return ",".join(f"{q['name']}:{q.get('weight', 1)}" for q in pool["queues"])


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.fixture(scope="module")
def three_pools(tools: dict[str, Path]) -> Rendered:
    return Rendered(
        "three-pools", helm_template(tools["helm"], "staging", "--set-json", f"worker.pools={json.dumps(THREE_POOLS)}")
    )


@pytest.mark.parametrize("env", ENV_NAMES)
def test_each_pool_renders_its_deployment_scaler_and_budget(scenarios: dict[str, Rendered], env: str) -> None:
    rendered = scenarios[env]
    pools = _pool_values(env)
    names = [p["name"] for p in pools]
    assert len(names) == 2, f"{env}: environments/ show two pools, found {names}"
    for kind in ("Deployment", "ScaledObject", "PodDisruptionBudget"):
        objects = rendered.pools(kind)
        assert sorted(objects) == sorted(names), f"{env} {kind}: {sorted(objects)}"
        for pool, obj in objects.items():
            assert obj["metadata"]["name"] == f"taskflow-worker-{pool}"
    # One of what every pool shares.
    for kind in ("ServiceAccount", "NetworkPolicy", "TriggerAuthentication"):
        assert len([o for o in rendered.of_kind(kind) if o["metadata"]["name"] == "taskflow-worker"]) == (
            0 if kind == "TriggerAuthentication" and env == "dev" else 1
        ), f"{env} {kind}"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_each_pool_gets_its_queues_and_slots(scenarios: dict[str, Rendered], env: str) -> None:
    deployments = scenarios[env].pools("Deployment")
    for pool in _pool_values(env):
        container = _container(deployments[pool["name"]])
        assert env_value(container, "TASKFLOW_WORKER_QUEUES") == _queues_env(pool), f"{env} {pool['name']}"
        assert env_value(container, "TASKFLOW_WORKER_CONCURRENCY") == str(pool["concurrency"])
        selector = deployments[pool["name"]]["spec"]["selector"]["matchLabels"]
        assert selector["taskflow/pool"] == pool["name"], "a pool's Deployment selects its own pods only"


def test_every_environment_consumes_the_same_queues(scenarios: dict[str, Rendered]) -> None:
    """dev and prod restate base's pools at their sizes (a list is replaced whole): none may drop or add a queue."""
    consumed = {
        env: {
            pool: env_value(_container(d), "TASKFLOW_WORKER_QUEUES")
            for pool, d in scenarios[env].pools("Deployment").items()
        }
        for env in ENV_NAMES
    }
    assert consumed["dev"] == consumed["staging"] == consumed["prod"], consumed


def test_scaled_object_per_pool_polls_its_queues_load(three_pools: Rendered) -> None:
    scaled = three_pools.pools("ScaledObject")
    assert sorted(scaled) == ["bulk", "mail"], "a pool with autoscaling off has no ScaledObject"
    expected = {
        # name: (query, targetValue, minReplicaCount)
        "mail": ("queue=critical&queue=mail_out", "2.1", 0),
        "bulk": ("queue=bulk-2", "40", 1),  # 50 x the chart's default 0.8
    }
    for pool, (query, target, low) in expected.items():
        (trigger,) = scaled[pool]["spec"]["triggers"]
        assert trigger["metadata"]["url"] == (
            f"http://taskflow-api.taskflow-staging.svc.cluster.local:8000/api/v1/load?{query}"
        )
        assert trigger["metadata"]["valueLocation"] == "load"
        assert trigger["metadata"]["targetValue"] == target
        assert scaled[pool]["spec"]["minReplicaCount"] == low
        assert scaled[pool]["spec"]["maxReplicaCount"] == 10, "the shared bound, merged under the pool's own keys"
        assert scaled[pool]["spec"]["scaleTargetRef"]["name"] == f"taskflow-worker-{pool}"


def test_pool_settings_override_the_shared_ones(three_pools: Rendered) -> None:
    deployments = three_pools.pools("Deployment")
    mail, fixed = deployments["mail"], deployments["fixed"]
    assert env_value(_container(mail), "TASKFLOW_WORKER_QUEUES") == "critical:3,mail_out:1"
    assert "replicas" not in mail["spec"]
    assert fixed["spec"]["replicas"] == 4, "autoscaling off: the pool's replicaCount"
    assert _container(fixed)["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert (
        _container(mail)["resources"] == _container(deployments["bulk"])["resources"] != _container(fixed)["resources"]
    )
    assert fixed["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "fixed"}
    assert "nodeSelector" not in mail["spec"]["template"]["spec"]
    assert len(three_pools.pools("PodDisruptionBudget")) == 3


def test_hpa_per_pool_selects_its_queues(tools: dict[str, Path], scenarios: dict[str, Rendered]) -> None:
    """hpa mode: each pool's HPA reads the External metric for its own queues (the HPA sums the series), with the
    same share per replica as KEDA; an extra selector of the user's is kept beside the chart's."""
    for rendered, extra in (
        (scenarios["prod-hpa"], {}),
        (
            Rendered(
                "hpa-selector",
                helm_template(
                    tools["helm"], "prod", *HPA, "--set-json",
                    'worker.autoscaling.hpa.metricSelector={"matchLabels": {"namespace": "taskflow-prod"}}',
                ),
            ),
            {"matchLabels": {"namespace": "taskflow-prod"}},
        ),
    ):  # fmt: skip
        hpas = rendered.pools("HorizontalPodAutoscaler")
        deployments = rendered.pools("Deployment")
        assert sorted(hpas) == sorted(deployments) == ["default", "reports"]
        for pool, hpa in hpas.items():
            (metric,) = hpa["spec"]["metrics"]
            queues = [
                q.split(":")[0] for q in env_value(_container(deployments[pool]), "TASKFLOW_WORKER_QUEUES").split(",")
            ]
            assert metric["external"]["metric"]["name"] == "taskflow_queue_load"
            assert metric["external"]["metric"]["selector"] == {
                **extra,
                "matchExpressions": [{"key": "queue", "operator": "In", "values": queues}],
            }, f"{rendered.name} {pool}"
            concurrency = int(env_value(_container(deployments[pool]), "TASKFLOW_WORKER_CONCURRENCY"))
            utilisation = (
                next(p for p in _pool_values("prod") if p["name"] == pool)
                .get("autoscaling", {})
                .get("targetUtilisation", 0.8)
            )
            assert float(metric["external"]["target"]["averageValue"]) == pytest.approx(concurrency * utilisation)


def test_keda_api_url_is_a_base(tools: dict[str, Path]) -> None:
    rendered = Rendered(
        "api-url",
        helm_template(tools["helm"], "staging", "--set", "worker.autoscaling.keda.apiUrl=https://tf.example.com/"),
    )
    (trigger,) = rendered.pools("ScaledObject")["reports"]["spec"]["triggers"]
    assert trigger["metadata"]["url"] == "https://tf.example.com/api/v1/load?queue=reports"


def _with_pools(pools: list[dict[str, Any]]) -> list[str]:
    return ["--set-json", f"worker.pools={json.dumps(pools)}"]


GOOD = {"name": "p", "queues": [{"name": "q"}], "concurrency": 1}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (_with_pools([{**GOOD, "name": "Reports"}]), "/pools/0/name"),
        (_with_pools([{**GOOD, "name": "-reports"}]), "/pools/0/name"),
        (_with_pools([{**GOOD, "name": "r" * 41}]), "/pools/0/name"),
        (_with_pools([GOOD, {**GOOD, "queues": [{"name": "other"}]}]),
         'worker.pools[1].name: another pool is already named "p"'),
        (_with_pools([{**GOOD, "queues": [{"name": "Bad.Queue"}]}]), "/pools/0/queues/0/name"),
        (_with_pools([{**GOOD, "queues": [{"name": "_q"}]}]), "/pools/0/queues/0/name"),
        (_with_pools([{**GOOD, "queues": [{"name": "q" * 64}]}]), "/pools/0/queues/0/name"),
        (_with_pools([{**GOOD, "queues": [{"name": "q", "weight": 0}]}]), "/pools/0/queues/0/weight"),
        (_with_pools([{**GOOD, "queues": [{"name": "q"}, {"name": "q", "weight": 2}]}]),
         'worker.pools[0].queues[1].name: pool "p" lists queue "q" twice'),
        (_with_pools([{**GOOD, "queues": []}]), "/pools/0/queues"),
        (_with_pools([{**GOOD, "concurrency": 0}]), "/pools/0/concurrency"),
        (_with_pools([{"name": "p", "queues": [{"name": "q"}]}]), "concurrency"),
        (_with_pools([{**GOOD, "autoscaling": {"targetUtilisation": 0}}]), "/pools/0/autoscaling/targetUtilisation"),
        (_with_pools([{**GOOD, "autoscaling": {"mode": "hpa"}}]), "mode"),
        (_with_pools([{**GOOD, "queue": "q"}]), "queue"),
        (_with_pools([]), "/pools"),
        (_with_pools([{**GOOD, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}]),
         'worker.pools[0].autoscaling: pool "p" has minReplicas 5 above maxReplicas 2'),
        (["--set", "worker.autoscaling.minReplicas=20"], "minReplicas 20 above maxReplicas 10"),
        (["--set", "worker.autoscaling.targetUtilisation=1.5"], "targetUtilisation"),
        (["--set", "worker.autoscaling.targetDuePerReplica=50"], "targetDuePerReplica"),
        (["--set", "worker.autoscaling.keda.url=http://x/api/v1/queue"], "url"),
        (["--set", "worker.autoscaling.keda.apiUrl=http://x/api?y=1"], "apiUrl"),
        (["--set", "global.config.TASKFLOW_WORKER_QUEUES=default"], "TASKFLOW_WORKER_QUEUES"),
        (["--set", "global.config.TASKFLOW_WORKER_CONCURRENCY=5"], "TASKFLOW_WORKER_CONCURRENCY"),
        (["--set", "global.fullnameOverride=" + "t" * 40, *_with_pools([{**GOOD, "name": "p" * 20}])],
         "longer than 63"),
    ],
)  # fmt: skip
def test_bad_pools_are_refused_by_name(tools: dict[str, Path], override: list[str], message: str) -> None:
    with pytest.raises(ToolError) as refused:
        helm_template(tools["helm"], "staging", *override)
    assert message in str(refused.value), f"the error for {override} does not name {message!r}:\n{refused.value}"


def test_the_scale_harness_reads_each_pools_policy_from_the_chart(scenarios: dict[str, Rendered]) -> None:
    """`make scale-test` applies what the chart renders: each pool's queues, slots and policy, from KEDA's
    ScaledObject or the HPA, for both pools (loadtest/scale.py, offline: no API, no workers)."""
    for name, env in (("dev", "dev"), ("prod-hpa", "prod")):
        rendered = scenarios[name]
        pools = pools_from_manifests(rendered.objects)
        assert [p.name for p in pools] == [p["name"] for p in _pool_values(env)], name
        for pool, values in zip(pools, _pool_values(env), strict=True):
            autoscaling = values.get("autoscaling", {})
            assert pool.queues == _queues_env(values)
            assert pool.concurrency == values["concurrency"]
            assert pool.load_path() == "/api/v1/load?" + "&".join(f"queue={q['name']}" for q in values["queues"])
            utilisation = autoscaling.get("targetUtilisation", 0.8)
            assert pool.policy.target_per_replica == pytest.approx(values["concurrency"] * utilisation)
            if name == "dev":
                scaled = rendered.pools("ScaledObject")[pool.name]["spec"]
                assert (pool.policy.min_replicas, pool.policy.max_replicas) == (
                    scaled["minReplicaCount"],
                    scaled["maxReplicaCount"],
                )
                assert pool.policy.cooldown == scaled["cooldownPeriod"]
            else:
                assert pool.policy.min_replicas >= 1, "an HPA keeps a pod"
    dev = {p.name: p for p in pools_from_manifests(scenarios["dev"].objects)}
    assert dev["reports"].policy.min_replicas == 0, "dev's reports pool sleeps at zero"


def test_a_pool_scaled_while_the_shared_autoscaling_is_off_still_authenticates(tools: dict[str, Path]) -> None:
    """KEDA's TriggerAuthentication and the chart's autoscaler token follow the pools that KEDA scales, not only
    worker.autoscaling.enabled. (Pools named "on" and "off" on purpose: YAML 1.1 reads them as booleans unless the
    chart quotes its label values.)"""
    pools = [{**GOOD, "name": "on", "autoscaling": {"enabled": True}}, {**GOOD, "name": "off"}]
    own_secret = ["--values", str(CHART / "ci" / "own-secret-values.yaml")]
    args = [*own_secret, "--set", "worker.autoscaling.enabled=false", *_with_pools(pools)]
    rendered = Rendered("one-pool-on", helm_template(tools["helm"], "staging", *args))
    assert sorted(rendered.pools("ScaledObject")) == ["on"]
    assert rendered.pools("Deployment")["off"]["spec"]["replicas"] == 1
    (trigger,) = rendered.pools("ScaledObject")["on"]["spec"]["triggers"]
    (auth,) = rendered.of_kind("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    (secret,) = rendered.of_kind("Secret")
    assert "autoscaler-token" in secret["stringData"]
    with pytest.raises(ToolError) as refused:
        helm_template(tools["helm"], "staging", *args, "--set", "global.secrets.autoscalerToken=")
    assert "global.secrets.autoscalerToken" in str(refused.value)
