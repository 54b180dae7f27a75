from __future__ import annotations

import pytest
from pydantic import ValidationError

from taskcore.settings import Settings


def test_task_modules_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFLOW_TASK_MODULES", "myapp.tasks, other.tasks ,")
    assert Settings().task_modules == ["myapp.tasks", "other.tasks"]


def test_defaults_work_on_a_developer_machine() -> None:
    settings = Settings()
    assert settings.database_url.startswith("postgresql://")
    assert settings.payload_limit_bytes == 256 * 1024
    assert settings.lease_renew_interval == settings.lease_seconds / 3


@pytest.mark.parametrize(
    "overrides",
    [
        {"database_url": "mysql://x"},
        {"redis_url": "http://x"},
        {"default_timeout_seconds": 100, "max_timeout_seconds": 10},
        {"default_max_retries": 5, "max_retries_limit": 2},
        {"api_port": 0},
        {"worker_concurrency": 0},
        {"log_format": "xml"},
    ],
)
def test_bad_values_fail_fast(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)  # type: ignore[arg-type]
