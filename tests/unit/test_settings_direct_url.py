"""TASKFLOW_DATABASE_DIRECT_URL and the statement cache rule: what a deployment behind PgBouncer gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from taskcore.settings import DEFAULT_STATEMENT_CACHE_SIZE, Settings

POOLED = "postgresql://taskflow@db.example:6432/taskflow"
DIRECT = "postgresql://taskflow@db.example:5432/taskflow"


def test_without_a_direct_url_everything_is_direct_and_cached() -> None:
    settings = Settings(database_url=DIRECT)
    assert settings.direct_database_url == DIRECT
    assert not settings.pooled
    assert settings.statement_cache_size == DEFAULT_STATEMENT_CACHE_SIZE == 100


@pytest.mark.parametrize("direct", ["", DIRECT])
def test_an_empty_or_equal_direct_url_is_the_same_as_none(direct: str) -> None:
    settings = Settings(database_url=DIRECT, database_direct_url=direct)
    assert settings.direct_database_url == DIRECT
    assert settings.statement_cache_size == DEFAULT_STATEMENT_CACHE_SIZE


def test_a_separate_direct_url_means_a_pooler_and_no_named_statements() -> None:
    settings = Settings(database_url=POOLED, database_direct_url=DIRECT)
    assert settings.pooled
    assert settings.direct_database_url == DIRECT
    assert settings.database_url == POOLED
    assert settings.statement_cache_size == 0


@pytest.mark.parametrize("size", [0, 100, 250])
def test_the_statement_cache_setting_wins(size: int) -> None:
    # PgBouncer >= 1.21 with max_prepared_statements tracks named statements itself: the cache may stay on.
    settings = Settings(database_url=POOLED, database_direct_url=DIRECT, db_statement_cache_size=size)
    assert settings.statement_cache_size == size


def test_the_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFLOW_DATABASE_URL", POOLED)
    monkeypatch.setenv("TASKFLOW_DATABASE_DIRECT_URL", DIRECT)
    monkeypatch.setenv("TASKFLOW_DB_STATEMENT_CACHE_SIZE", "7")
    settings = Settings()
    assert (settings.database_url, settings.direct_database_url, settings.statement_cache_size) == (POOLED, DIRECT, 7)


@pytest.mark.parametrize(
    ("field", "value"), [("database_direct_url", "mysql://x@y/z"), ("db_statement_cache_size", -1)]
)
def test_bad_values_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**{field: value})
    assert field in str(caught.value)
    assert "mysql://x@y/z" not in str(caught.value)  # a URL may carry a password: never echoed
