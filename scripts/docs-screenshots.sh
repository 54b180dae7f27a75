#!/usr/bin/env bash
# Regenerate the dashboard screenshots in docs/images/ (used by the README tour): runs the
# browser tests against a real API and worker, which save the representative pages there.
set -euo pipefail
cd "$(dirname "$0")/.."
export TASKFLOW_DOCS_SCREENSHOTS="$PWD/docs/images"
exec .venv/bin/pytest -q -p no:cacheprovider tests/e2e/test_dashboard.py \
  -k "test_submit_from_the_form_and_watch_it_succeed or test_overview_numbers_change or test_filter_the_list"
