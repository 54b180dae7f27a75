#!/usr/bin/env bash
# Make the base image the Dockerfiles name in FROM available to podman, so that `make images` builds the very
# Dockerfiles a registry-backed CI builds. Order: already in podman's storage -> pulled -> made here.
# "Made here" is for machines that reach no container registry: debootstrap a Debian bookworm with its Python 3.11
# (Debian's 3.11.2, not the python.org build the official image carries; same Debian release, same /usr/local/bin
# entry points) and import it under the FROM name. The rootfs tarball is cached under .taskflow/base-image/, and
# the imported image persists in podman's storage, so only the first run pays the ~50 s debootstrap.
# Usage: scripts/local-base-image.sh apps/api/Dockerfile [apps/worker/Dockerfile ...]
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${TASKFLOW_BASE_IMAGE_CACHE:-$ROOT_DIR/.taskflow/base-image}"
MIRROR="${TASKFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PODMAN="${PODMAN:-podman}"

# FROM lines name either an image or an earlier stage ("FROM build AS x"); keep the images.
bases() {
  awk 'toupper($1) == "FROM" { print $2; for (i = 3; i <= NF; i++) if (toupper($i) == "AS") print "stage:" $(i + 1) }' "$@" \
    | awk '/^stage:/ { stages[substr($0, 7)] = 1; next } { names[$0] = 1 } END { for (n in names) if (!(n in stages)) print n }'
}

# docker.io/library/NAME:TAG for a short name, as podman's short-name resolution would look it up.
qualified() {
  case "$1" in
    */*/*) echo "$1" ;;
    */*) echo "docker.io/$1" ;;
    *) echo "docker.io/library/$1" ;;
  esac
}

make_rootfs_tar() {
  local tar="$1" suite="$2" rootfs
  local debootstrap
  debootstrap="$(command -v debootstrap || echo /usr/sbin/debootstrap)"
  [ -x "$debootstrap" ] || { echo "local-base-image: debootstrap is missing (scripts/ensure-podman.sh installs it)" >&2; return 1; }
  [ "$(id -u)" -eq 0 ] || { echo "local-base-image: debootstrap needs root" >&2; return 1; }
  mkdir -p "$CACHE"
  rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  echo "local-base-image: debootstrap $suite into $rootfs (~50 s, once)" >&2
  "$debootstrap" --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$suite" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; return 1; }
  # What the official python image gives a Dockerfile: python/pip on /usr/local/bin, pip allowed to install.
  rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  # A machine behind a TLS-inspecting egress proxy trusts extra CAs; pip inside RUN steps needs them too.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  tar -C "$rootfs" -cf "$tar.part" . && mv "$tar.part" "$tar"
  rm -rf "$rootfs"
}

ensure_base() {
  local name tag suite tar
  name="$(qualified "$1")"
  if "$PODMAN" image exists "$name"; then
    return 0
  fi
  if [ "${TASKFLOW_BASE_IMAGE_PULL:-1}" = 1 ] && "$PODMAN" pull --quiet "$name" >/dev/null 2>&1; then
    echo "local-base-image: pulled $name" >&2
    return 0
  fi
  tag="${name##*:}"
  case "$tag" in
    *bookworm*) suite=bookworm ;;
    *) echo "local-base-image: cannot pull $name and only know how to make Debian bookworm bases" >&2; return 1 ;;
  esac
  tar="$CACHE/${name//[\/:]/_}.tar"
  [ -s "$tar" ] || make_rootfs_tar "$tar" "$suite"
  "$PODMAN" import --quiet \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    "$tar" "$name" >/dev/null
  echo "local-base-image: imported $name (made locally with debootstrap: Debian's Python, not the official image)" >&2
}

[ "$#" -gt 0 ] || { echo "usage: $0 DOCKERFILE..." >&2; exit 2; }
for base in $(bases "$@"); do
  ensure_base "$base"
done
