"""Fixtures of the platform checks: the pinned tools (installed on first use) and every scenario rendered once.

A tool that cannot be installed fails these tests: it never skips them, so a CI machine without the network cannot
pass the platform checks by not running them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.platform._support import CHART, ENV_NAMES, Rendered, ToolError, ensure_tools, helm_template

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every platform check is e2e: most run the pinned tools (helm, checkov, terraform, ...) or the scripts in
    subprocesses, and one rule for the directory keeps `-m "not e2e"` from reaching for them one by one."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


# Scenario → (the environment it builds on, its values file under the chart's ci/).
SCENARIOS = {
    "prod-hpa": ("prod", "hpa-values.yaml"),
    "own-secret": ("staging", "own-secret-values.yaml"),
    "dev-monitoring": ("dev", "monitoring-values.yaml"),
    "prod-azure": ("prod", "azure-values.yaml"),
    "prod-pooler": ("prod", "pooler-values.yaml"),
}


@pytest.fixture(scope="session")
def tools() -> dict[str, Path]:
    try:
        return ensure_tools()
    except ToolError as exc:
        pytest.fail(f"the platform tools could not be installed (scripts/platform_tools.py):\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def scenarios(tools: dict[str, Path]) -> dict[str, Rendered]:
    """Each environment as Argo CD renders it, plus the chart's ci/ scenarios on top of one of them."""
    rendered = {env: Rendered(env, helm_template(tools["helm"], env)) for env in ENV_NAMES}
    for name, (env, values) in SCENARIOS.items():
        rendered[name] = Rendered(name, helm_template(tools["helm"], env, "--values", str(CHART / "ci" / values)))
    return rendered


@pytest.fixture(scope="session")
def environments(scenarios: dict[str, Rendered]) -> list[Rendered]:
    return [scenarios[env] for env in ENV_NAMES]
