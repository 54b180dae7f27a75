#!/usr/bin/env bash
# Make sure Debian's headless Chromium is installed for the dashboard's browser tests
# (Playwright drives /usr/bin/chromium). Idempotent: does nothing when it is already there.
# Installing needs root and apt-get; without them it fails with a message saying so.
set -euo pipefail

CHROMIUM="${TASKFLOW_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: $CHROMIUM is missing and apt-get is not available; install Chromium and set TASKFLOW_CHROMIUM" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ensure-chromium: $CHROMIUM is missing; run 'apt-get install -y chromium' as root" >&2
    exit 1
  fi
fi
echo "ensure-chromium: installing chromium (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine: refresh once if the install fails.
$SUDO apt-get install -y --no-install-recommends chromium >&2 \
  || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends chromium >&2; }
[ -x "$CHROMIUM" ] || { echo "ensure-chromium: installed, but $CHROMIUM is still missing" >&2; exit 1; }
