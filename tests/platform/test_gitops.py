"""scripts/gitops.py, run for real (a subprocess, real helm) on a copy of the repository parts it touches.

Every test works in its own copy (scripts, chart, environments, the rendered dev manifests), so the real
environments/ never changes; the copy's .taskflow is a link to the work tree's, where the `tools` fixture put helm.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.platform._support import ROOT

pytestmark = pytest.mark.timeout(300)

COPIED = (
    "scripts/gitops.py",
    "scripts/render_manifests.py",
    "scripts/platform_tools.py",
    "platform/helm/taskflow",
    "platform/kubernetes/dev",
    "environments",
)
SHA = "3f2a9c1d0b7e4f5a6c8d9e0f1a2b3c4d5e6f7a8b"
IMAGE_LINE = re.compile(r"^\s+image: (\S+/)?taskflow-(api|worker):(\S+)$", re.MULTILINE)


@pytest.fixture
def repo(tools: dict[str, Path], tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for rel in COPIED:
        source, target = ROOT / rel, root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    (root / ".taskflow").symlink_to(ROOT / ".taskflow", target_is_directory=True)
    return root


def gitops(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repo / "scripts" / "gitops.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=repo,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def outputs(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines())


def snapshot(repo: Path) -> dict[str, str]:
    """Every file of the copy (the .taskflow link aside): path → text."""
    return {
        str(p.relative_to(repo)): p.read_text()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".taskflow" not in p.relative_to(repo).parts
    }


def changed_files(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def tag_of(repo: Path, env: str) -> str:
    data = yaml.safe_load((repo / "environments" / env / "version.yaml").read_text())
    assert data == {"global": {"image": {"tag": data["global"]["image"]["tag"]}}}
    return str(data["global"]["image"]["tag"])


def test_bump_rewrites_one_line_of_one_file(repo: Path) -> None:
    before = snapshot(repo)
    out = outputs(ok(gitops(repo, "bump", "--env", "staging", "--tag", SHA)))
    after = snapshot(repo)
    assert out == {"env": "staging", "tag": SHA, "previous": "0.1.0", "changed": "true"}
    path = "environments/staging/version.yaml"
    assert changed_files(before, after) == {path}
    old_lines, new_lines = before[path].splitlines(), after[path].splitlines()
    assert len(old_lines) == len(new_lines)
    differing = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert differing == [('    tag: "0.1.0"', f'    tag: "{SHA}"')]
    assert new_lines[0].startswith("#"), "the comment line is kept"
    assert tag_of(repo, "staging") == SHA


def test_bump_of_dev_re_renders_the_checked_in_manifests(repo: Path) -> None:
    before = snapshot(repo)
    ok(gitops(repo, "bump", "--env", "dev", "--tag", SHA))
    changed = changed_files(before, snapshot(repo))
    assert "environments/dev/version.yaml" in changed
    assert {
        "platform/kubernetes/dev/api-deployment.yaml",
        "platform/kubernetes/dev/worker-default-deployment.yaml",
        "platform/kubernetes/dev/worker-reports-deployment.yaml",
    } <= changed
    assert all(p == "environments/dev/version.yaml" or p.startswith("platform/kubernetes/dev/") for p in changed)
    images = IMAGE_LINE.findall((repo / "platform/kubernetes/dev/api-deployment.yaml").read_text())
    assert images, "the api Deployment names its image"
    assert {tag for _, _, tag in images} == {SHA}
    # The copy's manifests are what render_manifests --check expects: the check-in test stays green after a bump.
    check = subprocess.run(
        [sys.executable, str(repo / "scripts" / "render_manifests.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_bump_to_the_current_tag_changes_nothing(repo: Path) -> None:
    before = snapshot(repo)
    out = outputs(ok(gitops(repo, "bump", "--env", "dev", "--tag", "0.1.0")))
    assert out["changed"] == "false"
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bump", "--env", "qa", "--tag", SHA), "unknown environment 'qa'"),
        (("bump", "--env", "dev", "--tag", "1.2.0+build.5"), "invalid image tag"),
        (("bump", "--env", "prod", "--tag=-rc1"), "invalid image tag"),
        (("bump", "--env", "prod", "--tag", ".hidden"), "invalid image tag"),
        (("bump", "--env", "dev", "--tag", "a" * 129), "invalid image tag"),
        (("bump", "--env", "dev", "--tag", "two words"), "invalid image tag"),
        (("bump", "--env", "dev", "--tag", ""), "invalid image tag"),
        (("promote", "--from", "dev", "--to", "prod"), "one step at a time"),
        (("promote", "--from", "prod", "--to", "staging"), "one step at a time"),
        (("promote", "--from", "staging", "--to", "staging"), "one step at a time"),
        (("promote", "--to", "dev"), "first environment"),
        (("promote", "--from", "staging", "--to", "qa"), "unknown environment 'qa'"),
        (("diff", "--env", "staging", "--tag", "bad tag"), "invalid image tag"),
        (("next-env", "--env", "prod"), "last environment"),
    ],
)
def test_invalid_input_exits_non_zero_and_changes_nothing(repo: Path, args: tuple[str, ...], message: str) -> None:
    before = snapshot(repo)
    proc = gitops(repo, *args)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""
    assert snapshot(repo) == before


def test_a_bump_that_cannot_render_leaves_the_version_file_alone(repo: Path) -> None:
    # A chart helm refuses: the dev bump must not leave a new tag next to stale manifests.
    (repo / "platform/helm/taskflow/Chart.yaml").write_text("apiVersion: v2\nname: [broken\n")
    before = snapshot(repo)
    proc = gitops(repo, "bump", "--env", "dev", "--tag", SHA)
    assert proc.returncode == 1
    assert "helm template for dev failed" in proc.stderr
    assert snapshot(repo) == before


def test_promote_copies_the_tag_one_environment_at_a_time(repo: Path) -> None:
    ok(gitops(repo, "bump", "--env", "dev", "--tag", SHA))
    before = snapshot(repo)
    out = outputs(ok(gitops(repo, "promote", "--from", "dev", "--to", "staging")))
    assert out == {"env": "staging", "source": "dev", "tag": SHA, "previous": "0.1.0", "changed": "true"}
    assert changed_files(before, snapshot(repo)) == {"environments/staging/version.yaml"}
    assert tag_of(repo, "staging") == SHA
    assert tag_of(repo, "prod") == "0.1.0"
    # --from defaults to the environment before --to; promoting again is a no-op.
    before = snapshot(repo)
    ok(gitops(repo, "promote", "--to", "prod"))
    assert changed_files(before, snapshot(repo)) == {"environments/prod/version.yaml"}
    assert tag_of(repo, "prod") == SHA
    assert outputs(ok(gitops(repo, "promote", "--to", "prod")))["changed"] == "false"
    assert ok(gitops(repo, "tag", "--env", "prod")).strip() == SHA
    assert ok(gitops(repo, "next-env", "--env", "staging")).strip() == "prod"


def test_promote_writes_a_pull_request_body_with_the_manifest_diff(repo: Path, tmp_path: Path) -> None:
    ok(gitops(repo, "bump", "--env", "dev", "--tag", SHA))
    body_file = tmp_path / "body.md"
    ok(gitops(repo, "promote", "--from", "dev", "--to", "staging", "--body-file", str(body_file)))
    body = body_file.read_text()
    assert len(body) <= 65_536
    assert "changes only `environments/staging/version.yaml`" in body
    assert f"`taskflowacr.azurecr.io/taskflow-api:{SHA}`" in body
    assert f"`taskflowacr.azurecr.io/taskflow-worker:{SHA}`" in body
    # The diff runs from staging's previous tag to the promoted one.
    assert "### Rendered manifests of `staging`: `0.1.0` → `" + SHA + "`" in body
    assert "-          image: taskflowacr.azurecr.io/taskflow-api:0.1.0\n" in body
    assert f"+          image: taskflowacr.azurecr.io/taskflow-api:{SHA}\n" in body


def test_diff_shows_the_image_change_and_fits_a_pull_request(repo: Path) -> None:
    before = snapshot(repo)
    full = ok(gitops(repo, "diff", "--env", "prod", "--tag", "0.2.0"))
    assert "```diff\n--- a/api-deployment.yaml\n+++ b/api-deployment.yaml\n" in full
    assert "-          image: taskflowacr.azurecr.io/taskflow-worker:0.1.0\n" in full
    assert "+          image: taskflowacr.azurecr.io/taskflow-worker:0.2.0\n" in full
    assert "truncated" not in full
    assert full.rstrip().endswith("```")
    # Nothing but image references and version labels changes between two tags.
    changed = [
        line for line in full.splitlines() if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert changed
    assert all(re.search(r"(image: \S+:|app\.kubernetes\.io/version: \"?)0\.[12]\.0", line) for line in changed)
    # Cut short to a limit: still valid Markdown (the fence closed), saying how to see the rest.
    short = ok(gitops(repo, "diff", "--env", "prod", "--tag", "0.2.0", "--max-chars", "2000"))
    assert len(short) <= 2000
    assert "truncated" in short
    assert "make env-diff ENV=prod TAG=0.2.0" in short
    assert sum(1 for line in short.splitlines() if line.startswith("```")) == 2
    assert ok(gitops(repo, "diff", "--env", "prod", "--tag", "0.1.0")).endswith("No rendered object changes.\n")
    assert snapshot(repo) == before


def test_render_writes_an_environment_at_a_tag(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok(gitops(repo, "render", "--env", "staging", "--tag", "0.3.0", "--out", str(out)))
    names = {p.name for p in out.iterdir()}
    assert {"kustomization.yaml", "api-deployment.yaml", "worker-default-deployment.yaml", "migrate-job.yaml"} <= names
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "taskflow-staging"
    assert set(kustomization["resources"]) == names - {"kustomization.yaml"}
    deployment = yaml.safe_load((out / "api-deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/taskflow-api:0.3.0")
    # Without --tag: the version file's tag.
    ok(gitops(repo, "render", "--env", "staging", "--out", str(tmp_path / "current")))
    assert "taskflow-api:0.1.0" in (tmp_path / "current" / "api-deployment.yaml").read_text()


def test_plan_comment_leads_with_the_summary_and_fits_a_comment(repo: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.txt"
    resources = [
        f'  # azurerm_resource.r{i} will be created\n  + resource "azurerm_resource" "r{i}" {{}}\n' for i in range(3000)
    ]
    plan.write_text(
        "Terraform will perform the following actions:\n\n"
        + "".join(resources)
        + "\nPlan: 3000 to add, 0 to change, 0 to destroy.\n"
    )
    comment = ok(gitops(repo, "plan-comment", "--env", "staging", "--plan-file", str(plan)))
    assert comment.startswith("### Terraform plan: `staging`\n\n**Plan: 3000 to add, 0 to change, 0 to destroy.**\n")
    assert len(comment) <= 60_000
    assert "truncated" in comment
    assert comment.rstrip().endswith("</details>")
    assert sum(1 for line in comment.splitlines() if line.startswith("```")) == 2
    plan.write_text("No changes. Your infrastructure matches the configuration.\n")
    small = ok(gitops(repo, "plan-comment", "--env", "prod", "--plan-file", str(plan)))
    assert "**No changes. Your infrastructure matches the configuration.**" in small
    assert "truncated" not in small


def test_make_targets_run_gitops() -> None:
    """make bump / promote / env-diff are this script with the same arguments (make -n: shown, not run)."""
    make = shutil.which("make")
    assert make, "make is on PATH"

    # Under `make test` the parent make's flags would leak in (and "Entering directory" lines with them).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}

    def make_output(*args: str) -> str:
        proc = subprocess.run(
            [make, "--no-print-directory", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=ROOT,
            env=env,
        )
        return proc.stdout.strip()

    bump = make_output("-n", "bump", "ENV=dev", f"TAG={SHA}")
    assert bump.endswith(f'scripts/gitops.py bump --env "dev" --tag "{SHA}"')
    assert make_output("-n", "promote", "FROM=dev", "TO=staging").endswith(
        'scripts/gitops.py promote --from "dev" --to "staging"'
    )
    assert 'scripts/gitops.py diff --env "prod" --tag "0.2.0"' in make_output("-n", "env-diff", "ENV=prod", "TAG=0.2.0")
    help_text = make_output("help")
    assert all(f"make {target} " in help_text for target in ("bump", "promote", "env-diff"))


def test_images_names_what_an_environment_pulls_and_checks_the_registry(repo: Path) -> None:
    out = ok(gitops(repo, "images", "--env", "prod", "--tag", "0.4.0", "--registry", "taskflowacr.azurecr.io"))
    assert out.split() == ["taskflowacr.azurecr.io/taskflow-api:0.4.0", "taskflowacr.azurecr.io/taskflow-worker:0.4.0"]
    # dev loads its images locally (no registry): a release pushing to ACR would not reach it.
    proc = gitops(repo, "images", "--env", "dev", "--registry", "taskflowacr.azurecr.io")
    assert proc.returncode == 1
    assert "dev runs images from elsewhere than taskflowacr.azurecr.io: taskflow-api:0.1.0" in proc.stderr


def test_image_copies_name_what_a_promotion_imports_into_the_next_registry(repo: Path) -> None:
    ok(gitops(repo, "bump", "--env", "prod", "--tag", "0.4.0"))
    out = ok(
        gitops(
            repo,
            "image-copies",
            "--env",
            "prod",
            "--from-registry",
            "stg.azurecr.io",
            "--registry",
            "taskflowacr.azurecr.io",
        )
    )
    assert out.splitlines() == [
        "stg.azurecr.io/taskflow-api:0.4.0 taskflow-api:0.4.0",
        "stg.azurecr.io/taskflow-worker:0.4.0 taskflow-worker:0.4.0",
    ]
    # An environment that pulls from another registry than its own gets nothing copied, and a message saying why.
    proc = gitops(
        repo, "image-copies", "--env", "prod", "--from-registry", "stg.azurecr.io", "--registry", "prd.azurecr.io"
    )
    assert proc.returncode == 1
    assert not proc.stdout
    assert "set global.image.registry in environments/prod/values.yaml to prd.azurecr.io" in proc.stderr
