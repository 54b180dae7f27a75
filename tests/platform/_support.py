"""Helpers of the platform checks: run a tool, render the chart, pick objects out of the rendered YAML."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
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
    "SKIPS_FILE",
    "Rendered",
    "ToolError",
    "checkov_findings",
    "checkov_skips",
    "ensure_tools",
    "hcl_to_json",
    "helm_env",
    "helm_template",
    "run",
    "unexplained_and_stale",
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
    ("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass"): "secretproviderclass.json",
}
SCHEMAS = Path(__file__).resolve().parent / "schemas"
SKIPS_FILE = ROOT / "platform" / "checkov-skips.yaml"
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

    def pools(self, kind: str) -> dict[str, dict[str, Any]]:
        """The worker objects of one kind, one per pool: pool name → object (a pool rendering two fails)."""
        found: dict[str, dict[str, Any]] = {}
        for obj in self.of_kind(kind):
            labels = obj["metadata"]["labels"]
            if labels["app.kubernetes.io/component"] == "worker":
                pool = labels["taskflow/pool"]
                assert pool not in found, f"{self.name}: two {kind} objects for pool {pool}"
                found[pool] = obj
        return found

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


def checkov_findings(report: Any) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """(check id, resource, file) of every failed check, and the resources scanned per framework."""
    reports = report if isinstance(report, list) else [report]
    findings, scanned = [], {}
    for r in reports:
        scanned[r["check_type"]] = r["summary"]["resource_count"]
        for f in r["results"]["failed_checks"]:
            findings.append((f["check_id"], f["resource"].lstrip("/"), f"{f['file_path']}:{f['file_line_range']}"))
    return findings, scanned


def checkov_skips(framework: str | None) -> list[dict[str, Any]]:
    """The entries of platform/checkov-skips.yaml for one checkov run: `terraform`, or None for the other one
    (the rendered chart and the Dockerfiles), whose entries carry no `framework`."""
    skips: list[dict[str, Any]] = yaml.safe_load(SKIPS_FILE.read_text())["skips"]
    return [s for s in skips if s.get("framework") == framework]


def unexplained_and_stale(
    findings: Iterable[tuple[str, str, str]], skips: list[dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """Findings no skip matches, and skips that match no finding."""
    used: set[int] = set()
    unexplained = []
    for check, resource, where in findings:
        matches = [
            i
            for i, s in enumerate(skips)
            if s["check"] == check and any(fnmatch.fnmatch(resource, p) for p in s["resources"])
        ]
        used.update(matches)
        if not matches:
            unexplained.append(f"{check} on {resource} ({where})")
    stale = [f"{s['check']} {s['resources']}" for i, s in enumerate(skips) if i not in used]
    return sorted(set(unexplained)), stale


def hcl_to_json(hcl2tojson: Path, paths: Iterable[Path]) -> dict[Path, dict[str, Any]]:
    """Parse HCL files (.tf, .tfvars, .hcl) with python-hcl2's CLI, all in one process: path => document.

    String values come without their quotes; expressions stay as "${...}". A file that does not parse fails the
    whole call (hcl2tojson exits non-zero): the caller's assertion shows its message.
    """
    files = sorted(paths)
    if not files:
        return {}
    proc = run([hcl2tojson, "--quiet", "--ndjson", "--strip-string-quotes", *files], timeout=120)
    if proc.returncode != 0:
        raise AssertionError(explain(proc))
    docs: dict[Path, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        if line.strip():
            doc = json.loads(line)
            # NDJSON names each document's file (__file__) when there is more than one input.
            name = doc.pop("__file__", None)
            docs[(ROOT / name).resolve() if name else files[0].resolve()] = doc
    assert len(docs) == len(files), f"hcl2tojson returned {len(docs)} documents for {len(files)} files"
    return docs
