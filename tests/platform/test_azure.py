"""The chart's Azure wiring, off by default. The Secret synced from Azure Key Vault (global.secrets.keyVault): the
SecretProviderClass, the CSI volume of every pod that reads the Secret, and the hook order that lets the migration Job
read it on install. The workload identities (global.azureWorkloadIdentity) on the accounts Terraform federates."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.platform._support import CHART, ROOT, Rendered, pod_specs

pytestmark = pytest.mark.timeout(600)  # the first test installs the tools when `make tools` has not

SCENARIO = "prod-azure"
CI_GLOBAL = yaml.safe_load((CHART / "ci" / "azure-values.yaml").read_text())["global"]
CI_VALUES = CI_GLOBAL["secrets"]["keyVault"]
STACK = ROOT / "platform" / "terraform" / "stack"
DRIVER = "secrets-store.csi.k8s.io"


def _provider_class(rendered: Rendered) -> dict[str, Any]:
    (spc,) = rendered.of_kind("SecretProviderClass")
    return spc


def _secret_name(rendered: Rendered) -> str:
    (synced,) = _provider_class(rendered)["spec"]["secretObjects"]
    name: str = synced["secretName"]
    return name


def _keys_read(rendered: Rendered, secret: str) -> dict[str, set[str]]:
    """Who reads which keys of the Secret: every container's env, and KEDA's TriggerAuthentication."""
    readers: dict[str, set[str]] = {}
    for where, spec in pod_specs(rendered):
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == secret:
                    readers.setdefault(f"{where} container {container['name']}", set()).add(ref["key"])
            assert not [e for e in container.get("envFrom", []) if e.get("secretRef", {}).get("name") == secret], (
                f"{where}: envFrom the whole Secret (the keys it needs are not named)"
            )
    for auth in rendered.of_kind("TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            if ref["name"] == secret:
                readers.setdefault(f"TriggerAuthentication/{auth['metadata']['name']}", set()).add(ref["key"])
    return readers


def test_the_azure_wiring_is_off_unless_asked(environments: list[Rendered]) -> None:
    for rendered in environments:
        assert not rendered.of_kind("SecretProviderClass"), rendered.name
        for where, spec in pod_specs(rendered):
            assert not [v for v in spec.get("volumes", []) if "csi" in v], where
        for account in rendered.of_kind("ServiceAccount"):
            assert "annotations" not in account["metadata"], account["metadata"]
        for deployment in rendered.of_kind("Deployment"):
            assert "azure.workload.identity/use" not in deployment["spec"]["template"]["metadata"]["labels"]


def test_the_provider_class_reads_the_vault_with_the_add_ons_identity(scenarios: dict[str, Rendered]) -> None:
    spc = _provider_class(scenarios[SCENARIO])
    assert spc["spec"]["provider"] == "azure"
    params = spc["spec"]["parameters"]
    assert params["usePodIdentity"] == "false"
    assert params["useVMManagedIdentity"] == "true"
    assert params["userAssignedIdentityID"] == CI_VALUES["clientId"]
    assert params["keyvaultName"] == CI_VALUES["name"]
    assert params["tenantId"] == CI_VALUES["tenantId"]
    # The provider parses `objects` as YAML: a list of strings, each itself a YAML object description.
    objects = [yaml.safe_load(item) for item in yaml.safe_load(params["objects"])["array"]]
    assert all(o["objectType"] == "secret" for o in objects), objects
    # The vault secrets platform/terraform writes, each mounted under the Secret key it becomes.
    assert {o["objectAlias"]: o["objectName"] for o in objects} == {
        "database-url": "database-url",
        "redis-url": "redis-url",
        "api-keys": "api-keys",
        "autoscaler-token": "autoscaler-token",
        "webhook-secret": "webhook-secret",
    }
    (synced,) = spc["spec"]["secretObjects"]
    assert synced["type"] == "Opaque"
    assert {d["objectName"] for d in synced["data"]} == {o["objectAlias"] for o in objects}
    # Argo CD tracks its objects by app.kubernetes.io/instance and prunes strays: the driver's Secret has none.
    assert "app.kubernetes.io/instance" not in synced.get("labels", {})


def test_the_synced_secret_holds_exactly_the_keys_the_release_reads(scenarios: dict[str, Rendered]) -> None:
    rendered = scenarios[SCENARIO]
    secret = _secret_name(rendered)
    assert secret == "taskflow-secrets"  # environments/base: global.secrets.existingSecret
    assert not rendered.of_kind("Secret"), "the chart makes no Secret of its own while the vault fills it"
    readers = _keys_read(rendered, secret)
    # The API, the worker, the migration Job and KEDA's TriggerAuthentication all read it.
    workloads = {w.split(": ", 1)[1].split(" container ")[0] for w in readers if " container " in w}
    assert workloads == {
        "Deployment/taskflow-api",
        "Deployment/taskflow-worker-default",
        "Deployment/taskflow-worker-reports",
        "Job/taskflow-migrate",
    }, readers
    assert "TriggerAuthentication/taskflow-worker" in readers, readers
    read = set().union(*readers.values())
    synced = {d["key"] for d in _provider_class(rendered)["spec"]["secretObjects"][0]["data"]}
    assert synced == read, f"synced {sorted(synced)}, read {sorted(read)}"


def test_every_pod_that_reads_the_secret_mounts_the_csi_volume(scenarios: dict[str, Rendered]) -> None:
    """The driver syncs the Secret only while a pod mounts the volume, and the kubelet mounts a volume only for a
    container that names it: each container reading the Secret mounts it, read-only."""
    rendered = scenarios[SCENARIO]
    secret = _secret_name(rendered)
    spc_name = _provider_class(rendered)["metadata"]["name"]
    readers = _keys_read(rendered, secret)
    problems = []
    checked = 0
    for where, spec in pod_specs(rendered):
        csi = {
            v["name"]
            for v in spec.get("volumes", [])
            if v.get("csi", {}).get("driver") == DRIVER
            and v["csi"].get("readOnly") is True
            and v["csi"].get("volumeAttributes", {}).get("secretProviderClass") == spc_name
        }
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if f"{where} container {container['name']}" not in readers:
                continue
            checked += 1
            mounts = [m for m in container.get("volumeMounts", []) if m["name"] in csi]
            if not (len(mounts) == 1 and mounts[0].get("readOnly") is True):
                problems.append(f"{where} container {container['name']}: mounts {mounts} of the CSI volumes {csi}")
    assert checked >= 3, readers
    assert not problems, "\n".join(problems)


def test_the_provider_class_exists_before_the_migration_hook(scenarios: dict[str, Rendered]) -> None:
    """On install the pre-install Job runs before any Deployment: its pod is the first to mount the volume (and so
    makes the driver create the Secret), which needs the SecretProviderClass to exist already."""
    rendered = scenarios[SCENARIO]
    spc = _provider_class(rendered)["metadata"]["annotations"]
    (job,) = rendered.of_kind("Job")
    hook = job["metadata"]["annotations"]
    assert spc["helm.sh/hook"] == hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(spc["helm.sh/hook-weight"]) < int(hook["helm.sh/hook-weight"])
    # Recreated by the next install or upgrade, never deleted once the hook succeeded: the pods keep mounting it.
    assert spc["helm.sh/hook-delete-policy"] == "before-hook-creation"


def test_workload_identities_sit_on_the_service_accounts_terraform_federates(scenarios: dict[str, Rendered]) -> None:
    """Terraform federates each identity with system:serviceaccount:taskflow-<env>:<service account> (stack
    variable kubernetes: api_service_account, worker_service_account): the chart's accounts must be exactly those,
    annotated with the identity's client ID, and their pods labelled for the webhook."""
    rendered = scenarios[SCENARIO]
    variables = (STACK / "variables.tf").read_text()
    assert 'coalesce(var.kubernetes.namespace, "taskflow-${var.environment}")' in (STACK / "locals.tf").read_text()
    for component in ("api", "worker"):
        federated = re.search(rf'{component}_service_account\s*=\s*optional\(string,\s*"([^"]+)"\)', variables)
        assert federated, f"stack/variables.tf: no default for kubernetes.{component}_service_account"
        account = rendered.one("ServiceAccount", component)
        assert account["metadata"]["name"] == federated.group(1)
        assert account["metadata"]["namespace"] == "taskflow-prod"
        client_id = account["metadata"]["annotations"]["azure.workload.identity/client-id"]
        assert client_id == CI_GLOBAL["azureWorkloadIdentity"][f"{component}ClientId"]
        # Every worker pool runs under the one worker account Terraform federates.
        deployments = (
            [rendered.one("Deployment", "api")] if component == "api" else rendered.pools("Deployment").values()
        )
        for deployment in deployments:
            pod = deployment["spec"]["template"]
            assert pod["spec"]["serviceAccountName"] == federated.group(1)
            assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    # The migration Job runs under the namespace's default account: no identity, no label.
    (job,) = rendered.of_kind("Job")
    assert "azure.workload.identity/use" not in job["spec"]["template"]["metadata"]["labels"]
