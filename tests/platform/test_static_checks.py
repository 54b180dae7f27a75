"""checkov, hadolint and the compose spec on the delivery files; the checked-in manifests and environments."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.platform._support import (
    CHART,
    ENV_NAMES,
    ENVIRONMENTS,
    OUTPUT,
    ROOT,
    Rendered,
    checkov_findings,
    checkov_skips,
    explain,
    run,
    unexplained_and_stale,
    values_files,
)

pytestmark = pytest.mark.timeout(600)  # checkov alone takes ~30 s, more on a loaded machine or a cold install

DOCKERFILES = (ROOT / "apps" / "api" / "Dockerfile", ROOT / "apps" / "worker" / "Dockerfile")


def test_checkov_finds_nothing_but_the_listed_skips(
    tools: dict[str, Path], scenarios: dict[str, Rendered], tmp_path: Path
) -> None:
    """One checkov run over every scenario's rendered objects (the environments and the chart's ci/ values) and both
    Dockerfiles, no skips passed to it: each finding must match an entry of platform/checkov-skips.yaml, and each
    entry must still match a finding."""
    for rendered in scenarios.values():
        (tmp_path / rendered.name).mkdir()
        (tmp_path / rendered.name / "manifests.yaml").write_text(rendered.text)
    for dockerfile in DOCKERFILES:
        target = tmp_path / dockerfile.relative_to(ROOT)
        target.parent.mkdir(parents=True)
        shutil.copy(dockerfile, target)
    proc = run(
        [tools["checkov"], "--skip-download", "--quiet", "--compact", "--output", "json", "--directory", tmp_path,
         "--framework", "kubernetes", "dockerfile"],
        timeout=600,
    )  # fmt: skip
    assert proc.returncode in (0, 1), explain(proc)
    findings, scanned = checkov_findings(json.loads(proc.stdout))
    # checkov says "no runners" and exits 0 when a framework has nothing to run: that must not pass.
    assert scanned.get("kubernetes", 0) > 0, f"checkov scanned no Kubernetes objects: {scanned}"
    assert scanned.get("dockerfile", 0) == len(DOCKERFILES), f"checkov scanned {scanned.get('dockerfile')} Dockerfiles"

    skips = checkov_skips(None)
    for skip in skips:
        assert len(skip.get("reason", "")) > 40, f"{skip['check']}: every skip says why"
    unexplained, stale = unexplained_and_stale(findings, skips)
    assert not unexplained, (
        "checkov findings not in platform/checkov-skips.yaml (fix them, or list them with a reason):\n"
        + "\n".join(unexplained)
    )
    assert not stale, (
        "skips in platform/checkov-skips.yaml that match no finding any more (remove them):\n" + "\n".join(stale)
    )


def test_hadolint_passes(tools: dict[str, Path]) -> None:
    proc = run([tools["hadolint"], "--failure-threshold", "info", *DOCKERFILES])
    assert proc.returncode == 0, explain(proc)


def test_dockerfiles_cache_dependencies_and_run_unprivileged() -> None:
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        package = f"taskflow-{dockerfile.parent.name}"
        froms = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
        assert len(froms) == 2, f"{dockerfile}: a build stage and a runtime stage: {froms}"
        assert len(set(froms)) == 1, f"{dockerfile}: both stages on the same base: {froms}"
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", froms[0]), froms[0]
        deps = text.index(f"uv sync --frozen --no-dev --no-install-workspace --package {package}")
        assert deps < text.index("COPY libs/taskcore/src"), (
            f"{dockerfile}: the dependency layer must precede the source"
        )
        runtime = text[text.index("AS runtime") :]
        assert "uv" not in re.findall(r"^(?:RUN|COPY).*", runtime, flags=re.MULTILINE)[-1].split()
        assert re.search(r"^USER 10001:10001$", runtime, flags=re.MULTILINE), f"{dockerfile}: runs as root"
        assert re.search(rf'^ENTRYPOINT \["{package}"\]$', runtime, flags=re.MULTILINE), f"{dockerfile}: exec form"
        assert "org.opencontainers.image.version" in runtime
    for dockerfile, path in zip(DOCKERFILES, ("/health'", "/healthz'"), strict=True):
        healthcheck = re.search(r"^HEALTHCHECK .*\n.*", dockerfile.read_text(), flags=re.MULTILINE)
        assert healthcheck, f"{dockerfile}: no HEALTHCHECK"
        assert path in healthcheck.group(0), f"{dockerfile}: the HEALTHCHECK polls {path}"


def test_the_two_dockerfiles_build_alike() -> None:
    """Docker has no include: the two files share their build stage line for line, up to the package name."""

    def build_stage(dockerfile: Path) -> list[str]:
        app = dockerfile.parent.name
        text = dockerfile.read_text().replace(f"taskflow-{app}", "<package>").replace(f"apps/{app}/src", "<source>")
        stage = text[text.index("FROM ") : text.index("AS runtime")]
        return [line for line in stage.splitlines() if not line.startswith("#")]

    api, worker = (build_stage(d) for d in DOCKERFILES)
    assert api == worker, "apps/api/Dockerfile and apps/worker/Dockerfile build differently"


def test_compose_file_is_valid_and_scalable(tools: dict[str, Path]) -> None:
    compose_file = ROOT / "docker-compose.yml"
    proc = run([tools["check-jsonschema"], "--builtin-schema", "vendor.compose-spec", compose_file])
    assert proc.returncode == 0, explain(proc)
    services = yaml.safe_load(compose_file.read_text())["services"]
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    # --scale worker=3 needs no fixed name and no host port.
    assert not {"container_name", "ports"} & set(services["worker"])
    assert all("healthcheck" in services[name] for name in ("postgres", "redis"))
    # The worker's liveness is its event loop (/healthz), as in the image and the chart.
    assert "/healthz" in " ".join(services["worker"]["healthcheck"]["test"])


def test_checked_in_manifests_are_up_to_date(tools: dict[str, Path], scenarios: dict[str, Rendered]) -> None:
    proc = run([sys.executable, ROOT / "scripts" / "render_manifests.py", "--check"])
    assert proc.returncode == 0, explain(proc)
    # And kubectl builds them, as one kustomization, into the very objects the chart renders for dev.
    built = run([tools["kubectl"], "kustomize", OUTPUT / "dev"])
    assert built.returncode == 0, explain(built)
    objects = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(built.stdout) if d)
    assert objects == sorted((o["kind"], o["metadata"]["name"]) for o in scenarios["dev"].objects)


def test_argo_applications_use_the_environment_values_in_order() -> None:
    for env in ENV_NAMES:
        app = yaml.safe_load((ENVIRONMENTS / env / "application.yaml").read_text())
        source = app["spec"]["source"]
        assert (ROOT / source["path"]).resolve() == CHART
        files = [(CHART / f).resolve() for f in source["helm"]["valueFiles"]]
        assert files == [p.resolve() for p in values_files(env)], f"{env}: Argo CD would render other values than CI"
        assert app["spec"]["destination"]["namespace"] == f"taskflow-{env}"


def test_version_files_hold_the_image_tag_alone() -> None:
    """CI promotes a release by rewriting this one line (.github/workflows/release.yml)."""
    for env in ENV_NAMES:
        path = ENVIRONMENTS / env / "version.yaml"
        data = yaml.safe_load(path.read_text())
        assert data == {"global": {"image": {"tag": data["global"]["image"]["tag"]}}}, f"{path} holds more than the tag"
        assert re.fullmatch(r"[\w][\w.-]{0,127}", str(data["global"]["image"]["tag"]))
        assert len(re.findall(r"^\s+tag: ", path.read_text(), flags=re.MULTILINE)) == 1


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def test_overlays_carry_only_differences() -> None:
    """An overlay value equal to the base's (or to the chart default where the base is silent) is noise."""
    defaults = _leaves(yaml.safe_load((CHART / "values.yaml").read_text()))
    for sub in ("api", "worker"):
        sub_values = yaml.safe_load((CHART / "charts" / sub / "values.yaml").read_text())
        defaults.update(_leaves(sub_values, sub))
    base_only = _leaves(yaml.safe_load((ENVIRONMENTS / "base" / "values.yaml").read_text()))
    same = [key for key, value in base_only.items() if key in defaults and defaults[key] == value]
    assert not same, f"environments/base/values.yaml repeats chart defaults: {same}"
    base = {**defaults, **base_only}
    for env in ENV_NAMES:
        overlay = _leaves(yaml.safe_load((ENVIRONMENTS / env / "values.yaml").read_text()))
        same = [key for key, value in overlay.items() if key in base and base[key] == value]
        assert not same, f"environments/{env}/values.yaml repeats what base or the chart already says: {same}"


def test_values_are_documented() -> None:
    """Every value in the chart's values files carries a `# --` comment (on it, or on the block it belongs to)."""
    undocumented = []
    for path in (CHART / "values.yaml", *sorted(CHART.glob("charts/*/values.yaml"))):
        lines = path.read_text().splitlines()
        documented_indents: list[int] = []
        for i, line in enumerate(lines):
            match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
            if not match:
                continue
            indent = len(match.group(1))
            documented_indents = [d for d in documented_indents if d < indent]
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
                j -= 1
            has_doc = j >= 0 and lines[j].strip().startswith("# --")
            leaf = line.split(":", 1)[1].strip() != ""
            if has_doc:
                documented_indents.append(indent)
            elif leaf and not documented_indents:
                undocumented.append(f"{path.relative_to(ROOT)}:{i + 1}: {line.strip()}")
    assert not undocumented, "values without a `# --` description:\n" + "\n".join(undocumented)
