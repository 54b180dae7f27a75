"""Properties of what the chart renders for every environment: a regression in values or templates breaks one."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.platform._support import ENV_NAMES, ENVIRONMENTS, Rendered, env_value, helm_template, pod_specs

pytestmark = pytest.mark.timeout(600)  # the first test installs the tools when `make tools` has not


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def _deployments(rendered: Rendered, component: str) -> list[dict[str, Any]]:
    """The API's Deployment, or every worker pool's."""
    if component == "worker":
        return list(rendered.pools("Deployment").values())
    return [rendered.one("Deployment", component)]


def test_every_pod_runs_restricted(scenarios: dict[str, Rendered]) -> None:
    """Non-root, seccomp RuntimeDefault, read-only root with a /tmp emptyDir, no privilege escalation, no
    capabilities, no service account token, resources set — for every container, init containers included."""
    problems = []
    for rendered in scenarios.values():
        for where, spec in pod_specs(rendered):
            pod = spec["securityContext"]
            if spec.get("automountServiceAccountToken") is not False:
                problems.append(f"{where}: mounts a service account token")
            if pod.get("runAsNonRoot") is not True or pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: pod securityContext {pod}")
            tmp = [v for v in spec.get("volumes", []) if v["name"] == "tmp"]
            if not tmp or "emptyDir" not in tmp[0]:
                problems.append(f"{where}: no emptyDir for /tmp")
            for c in _containers(spec):
                sc = c["securityContext"]
                checks = {
                    "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
                    "allowPrivilegeEscalation false": sc.get("allowPrivilegeEscalation") is False,
                    "runAsNonRoot": sc.get("runAsNonRoot") is True,
                    "drop ALL": sc.get("capabilities", {}).get("drop") == ["ALL"],
                    "seccomp": sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                    "resources": {"requests", "limits"} <= set(c.get("resources", {})),
                    "tmp volume mounted": any(m["name"] == "tmp" for m in c.get("volumeMounts", [])),
                }
                problems += [f"{where} container {c['name']}: {name}" for name, ok in checks.items() if not ok]
    assert not problems, "\n".join(problems)


def test_service_accounts_mount_no_token(environments: list[Rendered]) -> None:
    for rendered in environments:
        accounts = rendered.of_kind("ServiceAccount")
        assert {a["metadata"]["labels"]["app.kubernetes.io/component"] for a in accounts} == {"api", "worker"}
        assert all(a["automountServiceAccountToken"] is False for a in accounts), rendered.name
        for component in ("api", "worker"):
            name = rendered.one("ServiceAccount", component)["metadata"]["name"]
            for deployment in _deployments(rendered, component):
                assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name


def test_api_probes_liveness_on_health_and_readiness_on_ready(environments: list[Rendered]) -> None:
    for rendered in environments:
        api = rendered.one("Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
        assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}, rendered.name
        assert api["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}, rendered.name
        assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}, rendered.name
        port = {p["name"]: p["containerPort"] for p in api["ports"]}["http"]
        assert api["args"][api["args"].index("--port") + 1] == str(port)
        service = rendered.one("Service", "api")
        assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_worker_liveness_probes_its_event_loop(environments: list[Rendered]) -> None:
    """/healthz on the metrics port (the loop's age, apps/worker metrics.py), restarting a hung worker in well under
    a lease-reconciler cycle of minutes; no readiness probe (no Service routes to workers)."""
    for rendered in environments:
        for deployment in _deployments(rendered, "worker"):
            worker = deployment["spec"]["template"]["spec"]["containers"][0]
            probe = worker["livenessProbe"]
            assert probe["httpGet"] == {"path": "/healthz", "port": "metrics"}, rendered.name
            assert "metrics" in {p["name"] for p in worker["ports"]}
            assert probe["periodSeconds"] * probe["failureThreshold"] <= 60, probe
            assert probe["timeoutSeconds"] >= 2, "the endpoint answers from its own thread, but a loaded node is slow"
            assert "readinessProbe" not in worker


def test_keda_scales_each_pool_on_the_work_it_holds(environments: list[Rendered]) -> None:
    """One ScaledObject per pool, on its own Deployment, polling GET /api/v1/load for the pool's queues, with one
    replica's share = the pool's concurrency x targetUtilisation (test_pools.py checks the arithmetic)."""
    for rendered in environments:
        deployments, scaled_objects = rendered.pools("Deployment"), rendered.pools("ScaledObject")
        assert set(scaled_objects) == set(deployments), rendered.name
        api_service = rendered.one("Service", "api")
        ns = api_service["metadata"]["namespace"]
        port = api_service["spec"]["ports"][0]["port"]
        for pool, scaled in scaled_objects.items():
            worker = deployments[pool]
            assert scaled["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": worker["metadata"]["name"],
            }
            assert "replicas" not in worker["spec"], f"{rendered.name}: the scaler owns the {pool} replica count"
            (trigger,) = scaled["spec"]["triggers"]
            meta = trigger["metadata"]
            container = worker["spec"]["template"]["spec"]["containers"][0]
            queues = [q.split(":")[0] for q in env_value(container, "TASKFLOW_WORKER_QUEUES").split(",")]
            query = "&".join(f"queue={q}" for q in queues)
            host = f"http://{api_service['metadata']['name']}.{ns}.svc.cluster.local:{port}"
            assert meta["url"] == f"{host}/api/v1/load?{query}", f"{rendered.name} {pool}"
            assert meta["valueLocation"] == "load"
            assert trigger["metricType"] == "AverageValue"
            # The share of one replica never exceeds its slots: past that, work would wait with no worker for it.
            concurrency = int(env_value(container, "TASKFLOW_WORKER_CONCURRENCY"))
            assert 0 < float(meta["targetValue"]) <= concurrency, f"{rendered.name} {pool}: {meta['targetValue']}"
            assert 0 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


@pytest.mark.parametrize(
    ("load", "target", "low", "high", "expected"),
    [(0, 40, 1, 10, 1), (120, 40, 1, 10, 3), (10_000, 40, 1, 10, 10), (3, 4, 0, 4, 1), (0, 4, 0, 4, 0)],
)
def test_scaling_math_in_docs(load: int, target: float, low: int, high: int, expected: int) -> None:
    """docs/scaling.md's rule, the one the HPA applies to an AverageValue target: clamp(ceil(load / target)), where
    load = due + running of the pool's queues and target = concurrency x targetUtilisation."""
    assert min(high, max(low, math.ceil(load / target))) == expected


def test_autoscaler_authenticates_exactly_when_the_api_does(environments: list[Rendered]) -> None:
    for rendered in environments:
        config = rendered.one("ConfigMap", "config")["data"]
        auths = rendered.of_kind("TriggerAuthentication")
        scaled_objects = rendered.pools("ScaledObject").values()
        assert len(scaled_objects) >= 2, rendered.name
        for scaled in scaled_objects:
            (trigger,) = scaled["spec"]["triggers"]
            if config["TASKFLOW_AUTH_ENABLED"] == "true":
                assert trigger["metadata"]["authMode"] == "bearer"
                # One TriggerAuthentication (one token) serves every pool.
                (auth,) = auths
                assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
                (ref,) = auth["spec"]["secretTargetRef"]
                assert ref["parameter"] == "token"
                assert ref["key"] == "autoscaler-token"
            else:
                assert not auths
                assert "authMode" not in trigger["metadata"]


def test_hpa_mode_scales_each_pool_on_an_external_metric(scenarios: dict[str, Rendered]) -> None:
    rendered = scenarios["prod-hpa"]
    assert not rendered.of_kind("ScaledObject")
    deployments, hpas = rendered.pools("Deployment"), rendered.pools("HorizontalPodAutoscaler")
    assert set(hpas) == set(deployments)
    assert len(hpas) >= 2
    for pool, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployments[pool]["metadata"]["name"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "External"
        assert metric["external"]["target"]["type"] == "AverageValue"
        assert hpa["spec"]["minReplicas"] >= 1, "an HPA cannot scale to zero"


def test_prod_and_staging_have_auth_on_and_redundant_apis(environments: list[Rendered]) -> None:
    by_name = {r.name: r for r in environments}
    for name in ("staging", "prod"):
        config = by_name[name].one("ConfigMap", "config")["data"]
        assert config["TASKFLOW_ENV"] == "production"
        assert config["TASKFLOW_AUTH_ENABLED"] == "true"
        assert by_name[name].one("Deployment", "api")["spec"]["replicas"] >= 2
        assert by_name[name].one("Ingress", "api")["spec"]["tls"], f"{name} serves the API without TLS"
    assert by_name["prod"].pools("ScaledObject")["default"]["spec"]["minReplicaCount"] >= 2
    assert by_name["dev"].one("ConfigMap", "config")["data"]["TASKFLOW_ENV"] == "development"


def test_the_ingress_never_publishes_probes_or_metrics(environments: list[Rendered]) -> None:
    """/metrics is open (Prometheus scrapes it in-cluster): the Ingress must not route it, nor "/"."""
    for rendered in environments:
        for ingress in rendered.of_kind("Ingress"):
            paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
            assert {"/api", "/ui"} <= set(paths), f"{rendered.name}: {paths}"
            for private in ("/metrics", "/health", "/ready"):
                assert not any(private.startswith(path.rstrip("/") + "/") or private == path for path in paths), (
                    f"{rendered.name}: the Ingress routes {private} ({paths})"
                )


def test_pod_disruption_budgets_cover_api_and_every_pool(environments: list[Rendered]) -> None:
    for rendered in environments:
        budgets = {"api": rendered.one("PodDisruptionBudget", "api"), **rendered.pools("PodDisruptionBudget")}
        deployments = {"api": rendered.one("Deployment", "api"), **rendered.pools("Deployment")}
        assert set(budgets) == set(deployments), rendered.name
        for name, pdb in budgets.items():
            selector = pdb["spec"]["selector"]["matchLabels"].items()
            labels = {d: dep["spec"]["template"]["metadata"]["labels"].items() for d, dep in deployments.items()}
            covered = [d for d, pod in labels.items() if selector <= pod]
            assert covered == [name], f"{rendered.name}: the {name} budget selects {covered}"
            assert pdb["spec"].get("maxUnavailable", 0) >= 1 or "minAvailable" in pdb["spec"]


def _grace(rendered: Rendered) -> dict[str, tuple[int, int]]:
    """Per pool: (terminationGracePeriodSeconds, TASKFLOW_WORKER_SHUTDOWN_GRACE_SECONDS)."""
    graces = {}
    for pool, deployment in rendered.pools("Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        drain = int(env_value(spec["containers"][0], "TASKFLOW_WORKER_SHUTDOWN_GRACE_SECONDS"))
        graces[pool] = (spec["terminationGracePeriodSeconds"], drain)
    return graces


def test_termination_grace_covers_the_worker_drain(tools: dict[str, Path], environments: list[Rendered]) -> None:
    for rendered in environments:
        for pool, (termination, drain) in _grace(rendered).items():
            assert termination > drain, f"{rendered.name} {pool}: SIGKILL after {termination}s cuts a {drain}s drain"
    changed = Rendered("grace", helm_template(tools["helm"], "prod", "--set", "worker.shutdownGraceSeconds=200"))
    graces = _grace(changed)
    # The shared value moves both numbers of the pools that do not set their own; reports sets 300 (base).
    assert graces["default"] == (210, 200), "one value must move both"
    assert graces["reports"] == (310, 300), "a pool's own grace wins over the shared one"


def test_network_policies_confine_api_and_worker(environments: list[Rendered]) -> None:
    for rendered in environments:
        # One worker policy selects every pool's pods (they share the component's labels).
        worker_selector = rendered.one("NetworkPolicy", "worker")["spec"]["podSelector"]["matchLabels"].items()
        for pool, deployment in rendered.pools("Deployment").items():
            assert worker_selector <= deployment["spec"]["template"]["metadata"]["labels"].items(), pool
        for component in ("api", "worker"):
            policy = rendered.one("NetworkPolicy", component)["spec"]
            assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
            ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
            assert len(ports - {53}) == 2, f"{rendered.name} {component} egress: {ports} (DNS, PostgreSQL, Redis only)"
            assert all(rule.get("to") for rule in policy["egress"]), f"{rendered.name} {component}: egress to anywhere"
        api_ingress = rendered.one("NetworkPolicy", "api")["spec"]["ingress"]
        assert {p["port"] for rule in api_ingress for p in rule["ports"]} == {"http"}
        assert all(rule["from"] for rule in api_ingress)


def test_migrations_run_before_the_new_pods(environments: list[Rendered]) -> None:
    """External database: a pre-install/pre-upgrade hook Job. In-cluster dev database: an init container per pod."""
    for rendered in environments:
        jobs = rendered.of_kind("Job")
        if rendered.name == "dev":
            assert not jobs
            for component in ("api", "worker"):
                for deployment in _deployments(rendered, component):
                    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
                    assert init["command"] == ["taskflow-migrate"]
        else:
            (job,) = jobs
            assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
            assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["taskflow-migrate"]


def test_a_chart_made_secret_exists_before_the_migration_hook(scenarios: dict[str, Rendered]) -> None:
    """Without existingSecret and with an external database, the Job (a pre-install hook) reads the chart's Secret,
    so the Secret is a hook of a lower weight; the ConfigMap is not needed (the Job gets its settings inline)."""
    rendered = scenarios["own-secret"]
    (secret,) = rendered.of_kind("Secret")
    (job,) = rendered.of_kind("Job")
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"]
    weight = int(secret["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert weight < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "envFrom" not in container
    assert env_value(container, "TASKFLOW_ENV") == "production"
    assert env_value(container, "TASKFLOW_DATABASE_URL")["secretKeyRef"]["name"] == secret["metadata"]["name"]
    # Authentication is on, so the autoscaler's key is in that Secret where its TriggerAuthentication looks.
    (ref,) = rendered.one("TriggerAuthentication", "worker")["spec"]["secretTargetRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]


def test_settings_come_from_the_configmap_and_credentials_from_the_secret(environments: list[Rendered]) -> None:
    for rendered in environments:
        config = rendered.one("ConfigMap", "config")
        assert all(key.startswith("TASKFLOW_") for key in config["data"])
        credentials = {"TASKFLOW_DATABASE_URL", "TASKFLOW_REDIS_URL", "TASKFLOW_API_KEYS", "TASKFLOW_WEBHOOK_SECRET"}
        assert not credentials & set(config["data"])
        for component in ("api", "worker"):
            for deployment in _deployments(rendered, component):
                container = deployment["spec"]["template"]["spec"]["containers"][0]
                assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
                keys = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
                expected = {
                    "TASKFLOW_DATABASE_URL": "database-url",
                    "TASKFLOW_REDIS_URL": "redis-url",
                    "TASKFLOW_WEBHOOK_SECRET": "webhook-secret",  # optional: callbacks off without it
                }
                if component == "api":
                    expected["TASKFLOW_API_KEYS"] = "api-keys"
                assert keys == expected, f"{rendered.name} {component}: {keys}"
    assert not [r for r in environments if r.name != "dev" and r.of_kind("Secret")], (
        "outside dev the Secret is external"
    )


def test_worker_declares_its_metrics_port(environments: list[Rendered]) -> None:
    for rendered in environments:
        for deployment in rendered.pools("Deployment").values():
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert str(ports["metrics"]) == env_value(container, "TASKFLOW_WORKER_METRICS_PORT")


def test_pods_spread_over_zones_and_nodes(environments: list[Rendered]) -> None:
    for rendered in environments:
        for component in ("api", "worker"):
            for deployment in _deployments(rendered, component):
                spec = deployment["spec"]["template"]["spec"]
                keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
                assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
                # Each Deployment spreads its own pods: a pool's spread ignores the other pools' pods.
                for constraint in spec["topologySpreadConstraints"]:
                    assert constraint["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("env", ENV_NAMES)
def test_images_run_the_version_file_tag(environments: list[Rendered], env: str) -> None:
    tag = yaml.safe_load((ENVIRONMENTS / env / "version.yaml").read_text())["global"]["image"]["tag"]
    (rendered,) = [r for r in environments if r.name == env]
    for _, spec in pod_specs(rendered):
        for c in _containers(spec):
            if "/taskflow-" in f"/{c['image']}":
                assert c["image"].endswith(f":{tag}"), f"{env}: {c['name']} runs {c['image']}, not tag {tag}"
