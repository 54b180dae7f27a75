"""The GitHub workflows, checked statically (they cannot run here): real actionlint, zizmor and the workflow schema,
plus the rules of this project — actions pinned by commit, least privilege, no expression inside a shell script,
and every make target, script, subcommand and path a workflow names existing in the repository.

The checkers are functions so that one test can feed them (and the real tools) a deliberately bad workflow.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.platform._support import ROOT, explain, run

pytestmark = pytest.mark.timeout(300)

WORKFLOWS_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.yml"))
ZIZMOR_CONFIG = ROOT / ".github" / "zizmor.yml"
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
PIN_RE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+?)(?:\s+#\s*(?P<comment>.*))?\s*$")
SHA_RE = re.compile(r"[0-9a-f]{40}")
VERSION_COMMENT_RE = re.compile(r"v\d+\.\d+\.\d+")
EXPRESSION_RE = re.compile(r"\$\{\{")
# Jobs that use these may hold the matching write permission.
PUSHES = re.compile(r"\bgit push\b")
OPENS_PULL_REQUESTS = "peter-evans/create-pull-request@"
COMMENTS_ON_PULL_REQUESTS = re.compile(r"\bgh pr (comment|create|edit)\b")
AZURE_LOGIN = "azure/login@"


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in data:
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="session")
def workflows() -> dict[str, dict[str, Any]]:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "release.yml", "promote.yml", "infra.yml"}
    return {path.name: load(path) for path in WORKFLOWS}


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def uses(job: dict[str, Any]) -> list[str]:
    return [str(step["uses"]) for step in steps(job) if "uses" in step]


def scripts(job: dict[str, Any]) -> list[str]:
    return [str(step["run"]) for step in steps(job) if "run" in step]


# ---- the checkers ----------------------------------------------------------------------------------------------


def pin_problems(name: str, text: str) -> list[str]:
    """Every `uses:` is a local action or pinned to a 40-hex commit with a `# vX.Y.Z` comment."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = PIN_RE.match(line)
        if not match or match["ref"].startswith("./"):
            continue
        ref = match["ref"].strip("'\"")
        _, _, version = ref.partition("@")
        if not SHA_RE.fullmatch(version):
            problems.append(f"{name}:{number}: {ref} is not pinned to a full commit SHA")
        elif not (match["comment"] and VERSION_COMMENT_RE.fullmatch(match["comment"].strip())):
            problems.append(f"{name}:{number}: {ref} has no `# vX.Y.Z` comment naming its release")
    return problems


def expression_problems(name: str, workflow: dict[str, Any]) -> list[str]:
    """No `${{ }}` inside a shell script: values reach scripts through `env:`, never by text substitution."""
    return [
        f"{name}: job {job_id} runs a script with an expression: {script.strip().splitlines()[0]!r}…"
        for job_id, job in workflow.get("jobs", {}).items()
        for script in scripts(job)
        if EXPRESSION_RE.search(script)
    ]


def _is_read_only(permissions: Any) -> bool:
    if permissions == {} or permissions in ("read-all", None):
        return permissions is not None
    return isinstance(permissions, dict) and all(v in ("read", "none") for v in permissions.values())


def permission_problems(name: str, workflow: dict[str, Any]) -> list[str]:
    """Nothing (or read only) at the top; each job declares what it needs, and a write only with the step using it."""
    problems = []
    if "permissions" not in workflow or not _is_read_only(workflow["permissions"]):
        problems.append(f"{name}: top-level permissions must be {{}} or read-only, not {workflow.get('permissions')}")
    for job_id, job in workflow.get("jobs", {}).items():
        problems += [f"{name}: job {job_id}: {p}" for p in _job_permission_problems(job)]
    return problems


def _job_permission_problems(job: dict[str, Any]) -> list[str]:
    perms = job.get("permissions")
    if not isinstance(perms, dict):
        return ["declares no permissions map of its own"]
    job_uses, job_scripts = uses(job), "\n".join(scripts(job))
    pushes = bool(PUSHES.search(job_scripts))
    opens_pull_requests = any(u.startswith(OPENS_PULL_REQUESTS) for u in job_uses)
    rules = {
        "id-token: write without azure/login": perms.get("id-token") == "write"
        and not any(u.startswith(AZURE_LOGIN) for u in job_uses),
        "contents: write but pushes nothing": perms.get("contents") == "write" and not (pushes or opens_pull_requests),
        "pull-requests: write but opens or comments on no pull request": perms.get("pull-requests") == "write"
        and not (opens_pull_requests or COMMENTS_ON_PULL_REQUESTS.search(job_scripts)),
        "checkout keeps credentials but the job pushes nothing": not pushes
        and any(
            str(step.get("uses", "")).startswith("actions/checkout@")
            and (step.get("with") or {}).get("persist-credentials", True) is not False
            for step in steps(job)
        ),
    }
    problems = [rule for rule, broken in rules.items() if broken]
    other_writes = {k for k, v in perms.items() if v == "write"} - {"id-token", "contents", "pull-requests"}
    if other_writes:
        problems.append(f"unexpected write permissions {sorted(other_writes)}")
    return problems


def run_tool(cmd: list[str | Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=180, check=False, cwd=cwd)


def zizmor_findings(zizmor: Path, target: Path, *extra: str, cwd: Path = ROOT) -> list[dict[str, Any]]:
    proc = run_tool([zizmor, "--offline", "--format", "json", *extra, target], cwd=cwd)
    # zizmor exits 0 (nothing found) or 10 + the highest severity; anything else is the tool failing.
    assert proc.returncode == 0 or 10 <= proc.returncode <= 14, explain(proc)
    findings = json.loads(proc.stdout or "[]")
    assert isinstance(findings, list)
    return findings


def finding_file(finding: dict[str, Any]) -> str:
    return Path(finding["locations"][0]["symbolic"]["key"]["Local"]["verbatim_path"]).name


def finding_where(finding: dict[str, Any]) -> str:
    return f"{finding['ident']} in {finding_file(finding)}: {finding['desc']}"


# ---- the real tools --------------------------------------------------------------------------------------------


def test_actionlint_finds_nothing(tools: dict[str, Path]) -> None:
    proc = run([tools["actionlint"], "-no-color", "-oneline", *WORKFLOWS])
    assert proc.returncode == 0, explain(proc)
    assert not proc.stdout.strip(), explain(proc)


def test_zizmor_finds_nothing_but_the_justified_ignores(tools: dict[str, Path]) -> None:
    findings = zizmor_findings(tools["zizmor"], WORKFLOWS_DIR)
    assert not findings, "zizmor --offline:\n" + "\n".join(finding_where(f) for f in findings)
    # Every ignore in .github/zizmor.yml carries a comment and still silences a real finding (else it goes).
    config = yaml.safe_load(ZIZMOR_CONFIG.read_text())
    lines = ZIZMOR_CONFIG.read_text().splitlines()
    ignored = {(audit, entry) for audit, rule in config["rules"].items() for entry in rule.get("ignore", [])}
    for _, entry in ignored:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {entry}")
        assert lines[index - 1].strip().startswith("#"), f"zizmor ignore {entry} says no reason"
    raw = zizmor_findings(tools["zizmor"], WORKFLOWS_DIR, "--no-config")
    found = {(f["ident"], finding_file(f)) for f in raw}
    unused = {(audit, entry) for audit, entry in ignored if (audit, entry.split(":")[0]) not in found}
    assert not unused, f"zizmor ignores that silence nothing: {unused}"


def test_workflows_match_the_github_schema(tools: dict[str, Path]) -> None:
    proc = run([tools["check-jsonschema"], "--builtin-schema", "vendor.github-workflows", *WORKFLOWS])
    assert proc.returncode == 0, explain(proc)


def test_dependabot_keeps_the_pins_and_the_lock_current(tools: dict[str, Path]) -> None:
    """The SHA pins and uv.lock age; Dependabot proposes the updates as pull requests (which ci.yml then tests)."""
    proc = run([tools["check-jsonschema"], "--builtin-schema", "vendor.dependabot", DEPENDABOT])
    assert proc.returncode == 0, explain(proc)
    config = yaml.safe_load(DEPENDABOT.read_text())
    watched = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert {("github-actions", "/"), ("uv", "/"), ("docker", "/apps/api"), ("docker", "/apps/worker")} <= watched


# ---- the project's rules ---------------------------------------------------------------------------------------


def test_actions_are_pinned_by_commit_with_their_release(workflows: dict[str, dict[str, Any]]) -> None:
    problems = [p for path in WORKFLOWS for p in pin_problems(path.name, path.read_text())]
    assert not problems, "\n".join(problems)
    # One action, one pin: the same commit everywhere, so an update is one search-and-replace.
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            if (match := PIN_RE.match(line)) and "@" in match["ref"]:
                action, _, sha = match["ref"].partition("@")
                pins.setdefault(action, set()).add(f"{sha} # {match['comment']}")
    assert {action: shas for action, shas in pins.items() if len(shas) > 1} == {}
    assert set(pins) >= {"actions/checkout", "azure/login", "docker/build-push-action", "aquasecurity/trivy-action"}


def test_no_expression_inside_a_script(workflows: dict[str, dict[str, Any]]) -> None:
    problems = [p for name, workflow in workflows.items() for p in expression_problems(name, workflow)]
    assert not problems, "\n".join(problems)


def test_permissions_are_least_privilege(workflows: dict[str, dict[str, Any]]) -> None:
    problems = [p for name, workflow in workflows.items() for p in permission_problems(name, workflow)]
    assert not problems, "\n".join(problems)


def test_every_workflow_limits_concurrency(workflows: dict[str, dict[str, Any]]) -> None:
    for name, workflow in workflows.items():
        jobs = workflow["jobs"].values()
        assert "concurrency" in workflow or all("concurrency" in job for job in jobs), f"{name}: no concurrency"
    # A run on main (release, apply) is never cancelled half-way.
    assert workflows["release.yml"]["concurrency"]["cancel-in-progress"] is False
    assert "pull_request" in workflows["infra.yml"]["concurrency"]["cancel-in-progress"]


def _makefile_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.][A-Za-z0-9_. -]*?)\s*:(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def _commands(workflows: dict[str, dict[str, Any]]) -> Iterator[tuple[str, list[str]]]:
    """(where, argv) of every simple command in every script: continuation lines joined, split at ; && || | and
    redirections (shell-aware, so a quoted ';' stays in its word)."""
    for name, workflow in workflows.items():
        for job_id, job in workflow["jobs"].items():
            for script in scripts(job):
                for line in script.replace("\\\n", " ").splitlines():
                    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
                    lexer.whitespace_split = True
                    argv: list[str] = []
                    for token in [*lexer, ";"]:
                        if token and set(token) <= set("();<>|&"):
                            if argv:
                                yield f"{name}:{job_id}", argv
                            argv = []
                        else:
                            argv.append(token)


def _script_problems(where: str, argv: list[str], script: str) -> list[str]:
    """A script a workflow runs exists; for a Python one, so do the subcommand and every option it is given."""
    if not (ROOT / script).is_file():
        return [f"{where}: {script} does not exist"]
    if not script.endswith(".py"):
        return []
    rest = argv[argv.index(script) + 1 :]
    subcommand = rest[:1] if rest and not rest[0].startswith("-") else []
    helped = run([sys.executable, ROOT / script, *subcommand, "--help"])
    if helped.returncode != 0:
        return [f"{where}: {script} {' '.join(subcommand)}: {helped.stderr.strip()}"]
    return [
        f"{where}: {script} {' '.join(subcommand)} has no option {option}"
        for option in (a.split("=")[0] for a in rest if a.startswith("--"))
        if option not in helped.stdout
    ]


def command_problems(workflows: dict[str, dict[str, Any]]) -> tuple[list[str], int]:
    """(what a workflow runs that does not exist, how many make targets and scripts were checked)."""
    targets = _makefile_targets()
    missing, checked = [], 0
    for where, argv in _commands(workflows):
        if argv[:1] == ["make"]:
            named = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
            checked += len(named)
            missing += [f"{where}: make {target}: no such target" for target in named if target not in targets]
        script = next((a for a in argv if a.startswith("scripts/")), None)
        if script is not None:
            checked += 1
            missing += _script_problems(where, argv, script)
    return missing, checked


def test_every_make_target_and_script_a_workflow_runs_exists(workflows: dict[str, dict[str, Any]]) -> None:
    missing, checked = command_problems(workflows)
    assert checked >= 5, "the workflows run make targets and scripts/gitops.py"
    assert not missing, "\n".join(missing)


def _matrix_values(job: dict[str, Any]) -> dict[str, list[str]]:
    matrix = (job.get("strategy") or {}).get("matrix") or {}
    values: dict[str, list[str]] = {k: [str(x) for x in v] for k, v in matrix.items() if isinstance(v, list)}
    for entry in matrix.get("include", []):
        for key, value in entry.items():
            values.setdefault(key, []).append(str(value))
    return values


def _expand(text: str, job: dict[str, Any]) -> list[str]:
    """Every value a string takes over the job's matrix: `${{ matrix.x }}` and `$VAR` / `${VAR}` of env vars set
    from the matrix. A string with another expression or variable is not a repository path: none."""
    matrix = _matrix_values(job)
    env_from_matrix = {
        var: matrix[m.group(1)]
        for var, value in (job.get("env") or {}).items()
        if (m := re.fullmatch(r"\$\{\{\s*matrix\.([\w-]+)\s*\}\}", str(value))) and m.group(1) in matrix
    }
    names = re.findall(r"\$\{\{\s*matrix\.([\w-]+)\s*\}\}|\$\{?(\w+)\}?", text)
    keys = sorted({a or b for a, b in names})
    choices = []
    for key in keys:
        if key in env_from_matrix:
            choices.append(env_from_matrix[key])
        elif key in matrix:
            choices.append(matrix[key])
        else:
            return []
    results = []
    for combo in itertools.product(*choices):
        value = text
        for key, choice in zip(keys, combo, strict=True):
            value = re.sub(rf"\$\{{\{{\s*matrix\.{re.escape(key)}\s*\}}\}}|\$\{{{key}\}}|\${key}\b", choice, value)
        results.append(value)
    return results


def _named_paths(workflows: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(where, repository path) of every path a workflow names: `paths:` filters, build files and contexts, and
    the paths in scripts (terraform's -chdir and the files it resolves from there, scripts/, apps/ …)."""
    for name, workflow in workflows.items():
        for event, spec in (workflow["on"] or {}).items():
            for pattern in (spec or {}).get("paths", []) if isinstance(spec, dict) else []:
                base = pattern.split("*", 1)[0].rstrip("/")
                if base:
                    yield f"{name}: on.{event}.paths", base
        for job_id, job in workflow["jobs"].items():
            yield from _build_paths(f"{name}:{job_id}", job)
            yield from _script_paths(f"{name}:{job_id}", job)


def _build_paths(where: str, job: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for step in steps(job):
        if str(step.get("uses", "")).startswith("docker/build-push-action@"):
            for key in ("file", "context"):
                for value in _expand(str((step.get("with") or {}).get(key, ".")), job):
                    yield f"{where}: build {key}", value


def _script_paths(where: str, job: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Words of a script that are repository paths: they start with a top-level directory, or with ../ after a
    terraform -chdir= (resolved from there); `-option=path` counts too."""
    top_dirs = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} | {".github"}
    for script in scripts(job):
        for line in script.replace("\\\n", " ").splitlines():
            chdir = re.search(r"-chdir=(\S+)", line)
            for token in shlex.split(line, comments=True):
                value = token.split("=", 1)[1] if token.startswith("-") and "=" in token else token
                if value.startswith("../") and chdir:
                    value = str(Path(chdir.group(1)) / value)
                elif value.split("/", 1)[0] not in top_dirs or "/" not in value:
                    continue
                for expanded in _expand(value, job):
                    yield where, expanded


def path_problems(workflows: dict[str, dict[str, Any]]) -> tuple[list[str], set[str]]:
    """(paths a workflow names that do not exist, every path it names, resolved and relative to the root)."""
    missing, seen = [], set()
    for where, path in _named_paths(workflows):
        resolved = (ROOT / path).resolve()
        seen.add(str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved))
        if resolved.exists():
            continue
        missing.append(f"{where}: {path}")
    return missing, seen


def test_every_path_a_workflow_names_exists(workflows: dict[str, dict[str, Any]]) -> None:
    missing, seen = path_problems(workflows)
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)
    # The checker sees what matters: both Dockerfiles, the scripts, each environment's Terraform files.
    expected = {"apps/api/Dockerfile", "apps/worker/Dockerfile", "scripts/gitops.py", "platform/terraform/stack"}
    expected |= {f"environments/{env}/{f}" for env in ("dev", "staging", "prod") for f in
                 ("backend.hcl", "terraform.tfvars")}  # fmt: skip
    assert expected <= seen, f"not found by the checker: {expected - seen}"


def test_release_and_promotion_call_gitops_as_documented(workflows: dict[str, dict[str, Any]]) -> None:
    release = workflows["release.yml"]
    # The GitOps commit never triggers another release: it touches only paths outside release.yml's filter.
    filters = release["on"]["push"]["paths"]
    assert not any(f.startswith(("environments", "platform")) for f in filters)
    images = release["jobs"]["images"]
    push = next(s for s in steps(images) if s.get("with", {}).get("push") is True)
    assert push["with"]["sbom"] is True
    assert push["with"]["provenance"] == "mode=max"
    assert "${{ github.sha }}" in images["env"]["IMAGE"]
    assert "gitops.py bump --env dev" in "\n".join(scripts(release["jobs"]["deploy-dev"]))
    promote = workflows["promote.yml"]
    assert promote["jobs"]["prod"]["environment"] == "production"
    for job_id, target in (("staging", "staging"), ("prod", "prod")):
        job = promote["jobs"][job_id]
        assert f"--to {target}" in "\n".join(scripts(job))
        opener = next(s for s in steps(job) if str(s.get("uses", "")).startswith(OPENS_PULL_REQUESTS))
        assert opener["with"]["add-paths"] == f"environments/{target}/version.yaml"


# ---- the checkers catch a bad workflow -------------------------------------------------------------------------

BAD_WORKFLOW = """\
name: bad
on:
  pull_request_target:
permissions: write-all
jobs:
  greet:
    runs-on: ubuntu-latest
    permissions:
      contents: write
      id-token: write
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
      - uses: docker/build-push-action@263435318d21b8e681c14492fe198d362a7d2c83 # v6.18.0
        with:
          file: apps/nowhere/Dockerfile
      - run: |
          make lint no-such-target
          python3 scripts/gitops.py bump --env dev --flavour x
          python3 scripts/gitops.py rollback --env dev
          terraform -chdir=platform/nowhere plan -var-file=../environments/dev/terraform.tfvars
"""


def test_a_bad_workflow_fails_every_check(tools: dict[str, Path], tmp_path: Path) -> None:
    workflows_dir = tmp_path / ".github" / "workflows"
    workflows_dir.mkdir(parents=True)
    bad = workflows_dir / "bad.yml"
    bad.write_text(BAD_WORKFLOW)
    workflow = load(bad)
    assert any("not pinned to a full commit SHA" in p for p in pin_problems("bad.yml", BAD_WORKFLOW))
    assert expression_problems("bad.yml", workflow)
    problems = "\n".join(permission_problems("bad.yml", workflow))
    for expected in ("top-level permissions", "id-token: write without azure/login", "contents: write but pushes"):
        assert expected in problems
    linted = run_tool([tools["actionlint"], "-no-color", "-oneline", bad], cwd=tmp_path)
    assert linted.returncode == 1
    assert "github.event.pull_request.title" in linted.stdout
    assert "potentially untrusted" in linted.stdout
    found = {f["ident"] for f in zizmor_findings(tools["zizmor"], workflows_dir, cwd=tmp_path)}
    assert {"unpinned-uses", "template-injection", "dangerous-triggers", "artipacked"} <= found
    missing, _ = command_problems({"bad.yml": workflow})
    assert len(missing) == 3, missing
    assert "make no-such-target: no such target" in missing[0]
    assert "has no option --flavour" in missing[1]
    assert "invalid choice: 'rollback'" in missing[2]
    missing, _ = path_problems({"bad.yml": workflow})
    assert sorted(p.split(": ")[-1] for p in missing) == [
        "apps/nowhere/Dockerfile",
        "platform/nowhere",
        "platform/nowhere/../environments/dev/terraform.tfvars",
    ]
