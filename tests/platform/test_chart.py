"""The Helm chart with every environment's values: helm lint, schema validation of what it renders, bad values."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.platform._support import (
    CHART,
    CUSTOM_RESOURCES,
    ENV_NAMES,
    ENVIRONMENTS,
    SCHEMAS,
    Rendered,
    explain,
    helm_env,
    run,
    values_files,
)

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one (AKS, minikube).
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
# The chart's Azure scenario: Key Vault sync and workload identities on, every ID filled.
AZURE = ["--values", str(CHART / "ci" / "azure-values.yaml")]


@pytest.mark.parametrize("env", ENV_NAMES)
def test_helm_lint_strict(tools: dict[str, Path], env: str) -> None:
    cmd: list[str | Path] = [tools["helm"], "lint", "--strict", CHART]
    for path in values_files(env):
        cmd += ["--values", path]
    proc = run(cmd, env=helm_env())
    assert proc.returncode == 0, explain(proc)
    assert "0 chart(s) failed" in proc.stdout, explain(proc)


pytestmark = pytest.mark.timeout(600)  # the first test installs the tools when `make tools` has not


def test_every_environment_renders_the_whole_system(scenarios: dict[str, Rendered]) -> None:
    for rendered in scenarios.values():
        kinds = {o["kind"] for o in rendered.objects}
        missing = {
            "Deployment",
            "Service",
            "ConfigMap",
            "ServiceAccount",
            "PodDisruptionBudget",
            "NetworkPolicy",
        } - kinds
        assert not missing, f"{rendered.name} renders no {sorted(missing)}"
        assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in rendered.of_kind("Deployment")} == {
            "api",
            "worker",
        }


def test_rendered_objects_validate_against_kubernetes_schemas(
    tools: dict[str, Path], scenarios: dict[str, Rendered], tmp_path: Path
) -> None:
    """kubernetes-validate --strict (unknown fields are errors) for the oldest and a current Kubernetes."""
    files = []
    for rendered in scenarios.values():
        path = tmp_path / f"{rendered.name}.yaml"
        path.write_text(rendered.builtin_text())
        files.append(path)

    def validate(version: str) -> tuple[str, str]:
        proc = run([tools["kubernetes-validate"], "--kubernetes-version", version, "--strict", "--quiet", *files])
        # Unknown kinds pass with a warning; every custom resource is left out by name above, so a warning is a
        # kind nobody declared here and fails the test too.
        problems = proc.returncode != 0 or "ERROR" in proc.stdout or "Couldn't find schema" in proc.stdout
        return version, explain(proc) if problems else ""

    with ThreadPoolExecutor(len(KUBERNETES_VERSIONS)) as pool:
        failures = [f"Kubernetes {v}:\n{msg}" for v, msg in pool.map(validate, KUBERNETES_VERSIONS) if msg]
    assert not failures, "\n\n".join(failures)


def test_custom_resources_match_their_schemas(
    tools: dict[str, Path], scenarios: dict[str, Rendered], tmp_path: Path
) -> None:
    """KEDA and Argo CD objects against hand-written schemas of the fields TaskFlow uses (tests/platform/schemas)."""
    by_schema: dict[str, list[Path]] = {}
    for rendered in scenarios.values():
        for i, obj in enumerate(rendered.custom()):
            path = tmp_path / f"{rendered.name}-{i}-{obj['kind']}.yaml"
            path.write_text(yaml.safe_dump(obj))
            by_schema.setdefault(CUSTOM_RESOURCES[(obj["apiVersion"], obj["kind"])], []).append(path)
    for env in ENV_NAMES:
        by_schema.setdefault("application.json", []).append(ENVIRONMENTS / env / "application.yaml")
    assert set(by_schema) == set(CUSTOM_RESOURCES.values()), (
        f"nothing rendered for {set(CUSTOM_RESOURCES.values()) - set(by_schema)}"
    )
    with ThreadPoolExecutor(len(by_schema)) as pool:
        procs = pool.map(
            lambda item: run([tools["check-jsonschema"], "--schemafile", SCHEMAS / item[0], *item[1]]),
            by_schema.items(),
        )
        failures = [explain(proc) for proc in procs if proc.returncode != 0]
    assert not failures, "\n\n".join(failures)


def _template(tools: dict[str, Path], *args: str) -> tuple[int, str]:
    cmd: list[str | Path] = [tools["helm"], "template", "taskflow", CHART, *values_args("staging"), *args]
    proc = run(cmd, env=helm_env())
    return proc.returncode, proc.stderr


def values_args(env: str) -> list[str]:
    return [arg for path in values_files(env) for arg in ("--values", str(path))]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--set", "worker.autoscaling.mode=cron"], "value must be one of 'keda', 'hpa'"),
        (["--set", "api.replicaCount=-1"], "minimum"),
        (["--set", "global.config.TASKFLOW_ENV=staging"], "TASKFLOW_ENV"),
        (["--set", "global.config.TASKFLOW_REDIS_URL=redis://x"], "TASKFLOW_REDIS_URL"),
        (["--set", "worker.shutdownGraceSeconds=soon"], "shutdownGraceSeconds"),
        (
            ["--set", "global.secrets.existingSecret=", "--set", "global.secrets.databaseUrl="],
            "global.secrets.databaseUrl",
        ),
        (["--set", "global.networkPolicy.postgresql.to=null"], "global.networkPolicy.postgresql.to"),
        (
            ["--values", str(CHART / "ci" / "own-secret-values.yaml"), "--set", "global.secrets.autoscalerToken="],
            "global.secrets.autoscalerToken",
        ),
        # Key Vault sync switched on but not filled in from Terraform's outputs: each gap named, with its source.
        *(
            (
                [*AZURE, "--set", f"global.secrets.keyVault.{key}="],
                f"global.secrets.keyVault.{key}: {what}",
            )
            for key, what in (
                ("name", "the Key Vault's name (terraform output -raw key_vault_name)"),
                ("tenantId", "the vault's Entra ID tenant (terraform output -raw tenant_id)"),
                ("clientId", "client ID of the Key Vault Secrets Provider add-on's identity"),
            )
        ),
        (
            [*AZURE, "--set", "global.secrets.existingSecret="],
            "global.secrets.keyVault needs global.secrets.existingSecret",
        ),
        (["--set", "global.secrets.keyVault.enabled=true"], "global.secrets.keyVault.clientId"),
        (
            [*AZURE, "--set", "global.postgresql.enabled=true", "--set", "global.postgresql.password=dev"],
            "global.secrets.keyVault: not with the in-cluster PostgreSQL",
        ),
        *(
            (
                [*AZURE, "--set", f"global.azureWorkloadIdentity.{c}ClientId="],
                f"global.azureWorkloadIdentity.{c}ClientId: client ID of the {c}'s workload identity"
                f" (terraform output -raw {c}_identity_client_id)",
            )
            for c in ("api", "worker")
        ),
        (["--set", "global.azureWorkloadIdentity.apiClientId=api"], "apiClientId"),
        (["--set", "global.secrets.keyVault.tenantId=my-tenant"], "tenantId"),
        (["--set", "global.secrets.keyVault.vaultName=kv-taskflow"], "vaultName"),
        (["--set", "global.secrets.keyVault.objects.api-key=api-key"], "api-key"),
        (["--set", "api.ingress.enabled=true", "--set", "api.ingress.host=Bad_Host"], "host"),
        (["--set-json", 'api.ingress.paths=["/api","/metrics"]'], "paths"),
        (["--set-json", 'api.ingress.paths=["/"]'], "paths"),
    ],
)
def test_bad_values_are_refused_by_name(tools: dict[str, Path], override: list[str], message: str) -> None:
    code, stderr = _template(tools, *override)
    assert code != 0, f"helm template accepted {override}"
    assert message in stderr, f"the error for {override} does not name {message!r}:\n{stderr}"


def test_a_misspelt_value_is_an_error(tools: dict[str, Path]) -> None:
    """The schemas are closed: a typo in a values file fails the render instead of being ignored."""
    for path in (CHART / "values.schema.json", *CHART.glob("charts/*/values.schema.json")):
        assert json.loads(path.read_text())["additionalProperties"] is False, f"{path} accepts unknown keys"
    code, stderr = _template(tools, "--set", "worker.autoscalling.enabled=false")
    assert code != 0
    assert "autoscalling" in stderr, stderr
