"""Fixtures of the platform checks: the pinned tools (installed on first use) and every scenario rendered once.

A tool that cannot be installed fails these tests: it never skips them, so a CI machine without the network cannot
pass the platform checks by not running them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.platform._support import ENV_NAMES, Rendered, ToolError, ensure_tools, helm_template


@pytest.fixture(scope="session")
def tools() -> dict[str, Path]:
    try:
        return ensure_tools()
    except ToolError as exc:
        pytest.fail(f"the platform tools could not be installed (scripts/platform_tools.py):\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def scenarios(tools: dict[str, Path]) -> dict[str, Rendered]:
    """Each environment as Argo CD renders it, plus prod with the HPA instead of KEDA."""
    rendered = {env: Rendered(env, helm_template(tools["helm"], env)) for env in ENV_NAMES}
    hpa = helm_template(tools["helm"], "prod", "--set", "worker.autoscaling.mode=hpa")
    rendered["prod-hpa"] = Rendered("prod-hpa", hpa)
    return rendered


@pytest.fixture(scope="session")
def environments(scenarios: dict[str, Rendered]) -> list[Rendered]:
    return [scenarios[env] for env in ENV_NAMES]
