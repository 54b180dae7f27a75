"""Build TaskFlow's two images with a real engine (podman, no daemon), as `make images` and the container tests do.

The engine comes from scripts/ensure-podman.sh (Debian packages, installed once), the Dockerfiles' base image from
scripts/local-base-image.sh (pulled, or made locally with debootstrap where no registry answers). The Dockerfiles are
built as they are, from the repository root — the same files the release workflow builds against the real base.
podman's layer cache and the Dockerfiles' uv cache mounts make a rebuild after a source change take seconds.

    python scripts/images.py [--tag dev]    # builds localhost/taskflow-api:TAG and localhost/taskflow-worker:TAG
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = {"api": ROOT / "apps" / "api" / "Dockerfile", "worker": ROOT / "apps" / "worker" / "Dockerfile"}
# Containers share the host's network (`--network host`): the default network would add a bridge and iptables
# rules to the machine. Without the explicit limits podman fails with "error setting rlimit" on some hosts.
RUN_FLAGS = ["--network", "host", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
SIZE_BUDGET_BYTES = 300 * 1000 * 1000


class EngineUnavailable(RuntimeError):
    """No container engine could be installed or started here; the message says why."""


def _cgroups_hybrid() -> bool:
    """cgroups v1 (or v1 + v2): only a pure v2 hierarchy has cgroup.controllers at its root."""
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


def base_image() -> str:
    """The image both Dockerfiles build on (their first FROM)."""
    for line in DOCKERFILES["api"].read_text().splitlines():
        if line.upper().startswith("FROM "):
            return line.split()[1]
    raise RuntimeError("apps/api/Dockerfile has no FROM")


def podman() -> list[str]:
    """The podman command line with what this host needs (runc where crun cannot run: hybrid cgroups)."""
    exe = shutil.which("podman")
    if exe is None:
        raise EngineUnavailable("podman is not installed (scripts/ensure-podman.sh installs it)")
    if _cgroups_hybrid() and shutil.which("runc"):
        return [exe, "--runtime", "runc"]
    return [exe]


def ensure_engine() -> list[str]:
    """Install podman (idempotent) and check it runs; the command line to call it with."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "ensure-podman.sh")], capture_output=True, text=True, check=False, timeout=600
    )
    if proc.returncode != 0:
        raise EngineUnavailable(f"scripts/ensure-podman.sh failed: {proc.stderr.strip()[-2000:]}")
    cmd = podman()
    info = subprocess.run([*cmd, "info", "--format", "{{.Host.OCIRuntime.Name}}"], capture_output=True, text=True)
    if info.returncode != 0:
        raise EngineUnavailable(f"podman is installed but does not run: {info.stderr.strip()[-2000:]}")
    return cmd


def ensure_base(cmd: list[str]) -> None:
    """The image the Dockerfiles name in FROM, pulled or made locally (scripts/local-base-image.sh)."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "local-base-image.sh"), *map(str, DOCKERFILES.values())],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env={**os.environ, "PODMAN": cmd[0]},
    )
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:  # an engine that runs but cannot get its base is a failure, not a reason to skip
        raise RuntimeError(f"the base image could not be pulled or made: {proc.stderr.strip()[-2000:]}")


@dataclass(frozen=True)
class Built:
    app: str
    ref: str
    seconds: float
    size: int


def image_size(cmd: list[str], ref: str) -> int:
    out = subprocess.run(
        [*cmd, "image", "inspect", "--format", "{{.Size}}", ref], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def build(cmd: list[str], app: str, tag: str, *, quiet: bool = False) -> Built:
    ref = f"localhost/taskflow-{app}:{tag}"
    started = time.monotonic()
    proc = subprocess.run(
        [
            *cmd,
            "build",
            # The docker format keeps HEALTHCHECK (OCI image configs have no field for it).
            "--format",
            "docker",
            "--network",
            "host",
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
            "--file",
            str(DOCKERFILES[app]),
            "--tag",
            ref,
            str(ROOT),
        ],
        capture_output=quiet,
        text=True,
        check=False,
        timeout=1200,
    )
    if proc.returncode != 0:
        detail = f":\n{(proc.stdout or '')[-3000:]}{(proc.stderr or '')[-3000:]}" if quiet else ""
        raise RuntimeError(f"podman build of {DOCKERFILES[app].relative_to(ROOT)} failed{detail}")
    return Built(app, ref, time.monotonic() - started, image_size(cmd, ref))


def build_all(tag: str, *, quiet: bool = False) -> tuple[list[str], list[Built]]:
    cmd = ensure_engine()
    ensure_base(cmd)
    built = [build(cmd, app, tag, quiet=quiet) for app in DOCKERFILES]
    # Each rebuild leaves the layers it replaced behind, untagged; those of the last day stay as the build cache.
    subprocess.run(
        [*cmd, "image", "prune", "--force", "--filter", "until=24h"], capture_output=True, check=False, timeout=300
    )
    return cmd, built


def largest_packages(cmd: list[str], ref: str, count: int = 5) -> list[tuple[str, int]]:
    """The biggest entries of the image's site-packages: what its virtual environment's size is made of."""
    script = (
        "import json, os, sysconfig; root = sysconfig.get_paths()['purelib']; sizes = {}\n"
        "for entry in os.listdir(root):\n"
        "    total = 0\n"
        "    for base, _dirs, files in os.walk(os.path.join(root, entry)):\n"
        "        total += sum(os.lstat(os.path.join(base, f)).st_size for f in files)\n"
        "    sizes[entry] = total\n"
        "print(json.dumps(sorted(sizes.items(), key=lambda kv: -kv[1])))"
    )
    out = subprocess.run(
        [*cmd, "run", "--rm", *RUN_FLAGS, "--entrypoint", "python", ref, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [(name, size) for name, size in json.loads(out.stdout)[:count]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default="dev", help="tag of localhost/taskflow-{api,worker} (default: dev)")
    args = parser.parse_args(argv)
    try:
        cmd, built = build_all(args.tag)
    except (EngineUnavailable, RuntimeError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    for image in built:
        budget = "within" if image.size < SIZE_BUDGET_BYTES else "OVER"
        print(f"{image.ref}: {image.size / 1e6:.0f} MB ({budget} the 300 MB budget), built in {image.seconds:.1f} s")
    base = subprocess.run(
        [*cmd, "image", "inspect", "--format", "{{.Size}}", base_image()],
        capture_output=True,
        text=True,
        check=False,
    )
    if base.returncode == 0:
        print(f"of which the base image ({base_image()}): {int(base.stdout.strip()) / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
