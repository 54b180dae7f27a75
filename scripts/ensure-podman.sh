#!/usr/bin/env bash
# Make sure a daemonless container engine is installed: Debian's podman, with podman-compose, slirp4netns and
# debootstrap (scripts/local-base-image.sh uses it when the Dockerfiles' base image cannot be pulled).
# Idempotent: does nothing when everything is already there. Installing needs root (or passwordless sudo) and
# apt-get; without them it fails with a message saying so, and the container tests skip with that reason.
set -euo pipefail

# slirp4netns gives each Compose container a network namespace of its own without a bridge or iptables rules.
PACKAGES=(podman podman-compose debootstrap slirp4netns)
# Debian's podman runs containers with crun, which refuses a host whose cgroups are in hybrid (v1 + v2) mode;
# runc handles it (scripts/images.py then passes --runtime runc).
if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]; then
  PACKAGES+=(runc)
fi
missing=()
for pkg in "${PACKAGES[@]}"; do
  # debootstrap lives in /usr/sbin, which a non-root PATH may lack.
  command -v "$pkg" >/dev/null 2>&1 || [ -x "/usr/sbin/$pkg" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-podman: ${missing[*]} missing and apt-get is not available; install podman and podman-compose" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ensure-podman: ${missing[*]} missing; run 'apt-get install -y ${PACKAGES[*]}' as root" >&2
    exit 1
  fi
fi
echo "ensure-podman: installing ${PACKAGES[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine: refresh once if the install fails.
$SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}" >&2 \
  || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}" >&2; }
command -v podman >/dev/null 2>&1 || { echo "ensure-podman: installed, but podman is still missing" >&2; exit 1; }
