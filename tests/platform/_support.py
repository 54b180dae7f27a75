"""Helpers of the platform checks: run a tool, render the chart, pick objects out of the rendered YAML."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from platform_tools import ToolError, ensure_tools  # noqa: E402
from render_manifests import CHART, ENVIRONMENTS, OUTPUT, helm_env, helm_template, values_files  # noqa: E402

__all__ = [
    "CHART",
    "ENVIRONMENTS",
    "OUTPUT",
    "ROOT",
    "Rendered",
    "ToolError",
    "ensure_tools",
    "helm_env",
    "helm_template",
    "run",
    "values_files",
]

ENV_NAMES = ("dev", "staging", "prod")
# Custom resources the Kubernetes schemas do not know, each checked against a schema of ours in schemas/.
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.json",
    ("argoproj.io/v1alpha1", "Application"): "application.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
}
SCHEMAS = Path(__file__).resolve().parent / "schemas"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it: 10x faster


def run(
    cmd: list[str | Path], *, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env, check=False, cwd=ROOT
    )


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed tool said, for the assertion message."""
    cmd = " ".join(str(c) for c in proc.args)
    return f"`{cmd}` exited {proc.returncode}\n--- stdout\n{proc.stdout.strip()}\n--- stderr\n{proc.stderr.strip()}"


@dataclass(frozen=True)
class Rendered:
    """One scenario's `helm template` output: the raw text and the parsed objects."""

    name: str
    text: str

    @cached_property
    def objects(self) -> list[dict[str, Any]]:
        return [doc for doc in yaml.load_all(self.text, Loader=_Loader) if doc]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, component: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["labels"]["app.kubernetes.io/component"] == component]
        assert len(found) == 1, f"{self.name}: expected one {kind} for {component}, found {len(found)}"
        return found[0]

    def builtin_text(self) -> str:
        """The objects Kubernetes' own schemas cover (custom resources left out by name)."""
        keep = [o for o in self.objects if (o["apiVersion"], o["kind"]) not in CUSTOM_RESOURCES]
        return yaml.safe_dump_all(keep, sort_keys=False)

    def custom(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if (o["apiVersion"], o["kind"]) in CUSTOM_RESOURCES]


def pod_specs(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """(object id, pod spec) of every workload."""
    for obj in rendered.objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{rendered.name}: {obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def env_value(container: dict[str, Any], name: str) -> Any:
    for entry in container.get("env", []):
        if entry["name"] == name:
            return entry.get("value", entry.get("valueFrom"))
    raise AssertionError(f"container {container['name']} has no env {name}")
