"""API keys, scopes and redaction without a server: the pieces the API's auth is built from."""

from __future__ import annotations

import json
import logging

import pytest
import structlog
from pydantic import ValidationError

from taskcore.logging import configure_logging
from taskcore.redact import MASK, redact_secrets, redact_text
from taskcore.settings import Settings
from taskflow_api import keygen
from taskflow_api.auth import KeyRing, Principal, Scope, hash_key


def test_a_key_ring_finds_the_principal_of_a_key_and_nothing_else() -> None:
    reader, writer = keygen.new_key(), keygen.new_key()
    ring = KeyRing(
        (
            keygen.entry_for("reader", reader, [Scope.TASKS_READ]),
            keygen.entry_for("writer", writer, [Scope.TASKS_WRITE]),
        )
    )
    assert ring.find(reader) == Principal("reader", frozenset({Scope.TASKS_READ}))
    assert ring.find(writer) == Principal("writer", frozenset({Scope.TASKS_WRITE}))
    for wrong in ("", reader[:-1], reader + "x", hash_key(reader), reader.upper()):
        assert ring.find(wrong) is None


def test_admin_allows_every_scope_and_others_only_their_own() -> None:
    admin = Principal("admin", frozenset({Scope.ADMIN}))
    reader = Principal("reader", frozenset({Scope.TASKS_READ}))
    assert all(admin.allows(scope) for scope in Scope)
    assert reader.allows(Scope.TASKS_READ)
    assert not reader.allows(Scope.TASKS_WRITE)
    assert not reader.allows(Scope.ADMIN)


def test_minted_keys_are_long_random_and_stored_only_as_a_digest() -> None:
    keys = {keygen.new_key() for _ in range(100)}
    assert len(keys) == 100
    key = keys.pop()
    assert key.startswith("tf_")
    assert len(key) >= 40
    entry = keygen.entry_for("ci", key, [Scope.TASKS_READ, Scope.TASKS_WRITE])
    assert key not in entry.model_dump_json()
    assert entry.sha256 == hash_key(key)


def test_keygen_prints_a_key_and_an_entry_settings_accept(capsys: pytest.CaptureFixture[str]) -> None:
    assert keygen.main(["--name", "ci", "--scopes", "tasks:read,tasks:write", "--json"]) == 0
    minted = json.loads(capsys.readouterr().out)
    settings = Settings(api_keys=[minted["entry"]])  # type: ignore[arg-type]
    ring = KeyRing(settings.api_keys)
    assert ring.find(minted["key"]) == Principal("ci", frozenset({Scope.TASKS_READ, Scope.TASKS_WRITE}))


def test_keygen_refuses_an_unknown_scope() -> None:
    with pytest.raises(SystemExit):
        keygen.main(["--name", "ci", "--scopes", "tasks:delete"])


@pytest.mark.parametrize(
    ("env", "enabled", "required"),
    [
        ("development", None, False),
        ("test", None, True),
        ("production", None, True),
        ("development", True, True),
        ("production", False, False),
    ],
)
def test_auth_is_on_by_default_outside_development(env: str, enabled: bool | None, required: bool) -> None:
    assert Settings(env=env, auth_enabled=enabled).auth_required is required  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "x", "sha256": "not-hex", "scopes": ["admin"]},
        {"name": "x", "sha256": "a" * 64, "scopes": ["root"]},
        {"name": "x", "sha256": "a" * 64, "scopes": []},
        {"name": "", "sha256": "a" * 64, "scopes": ["admin"]},
        {"name": "x", "key": "plaintext", "scopes": ["admin"]},
    ],
)
def test_bad_key_entries_fail_fast(entry: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(api_keys=[entry])  # type: ignore[arg-type]


def test_two_keys_with_one_name_fail_fast() -> None:
    entry = {"name": "ci", "sha256": "a" * 64, "scopes": ["admin"]}
    with pytest.raises(ValidationError, match="name of its own"):
        Settings(api_keys=[entry, {**entry, "sha256": "b" * 64}])  # type: ignore[arg-type]


def test_settings_repr_shows_no_urls_or_keys() -> None:
    settings = Settings(database_url="postgresql://u:hunter2@db/x", redis_url="redis://:hunter3@r/0")
    assert "hunter" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://user:hunter2@db:5432/x", f"postgresql://user:{MASK}@db:5432/x"),
        ("redis://:hunter2@cache:6379/0 down", f"redis://:{MASK}@cache:6379/0 down"),
        ("rediss://default:p%40ss@h/1", f"rediss://default:{MASK}@h/1"),
        ("Authorization: Bearer tf_abc.def-ghi", f"Authorization: Bearer {MASK}"),
        ("basic dXNlcjpwYXNz", f"basic {MASK}"),
        ("postgresql://user@db/x has no password", "postgresql://user@db/x has no password"),
        ("http://example.com:8080/path", "http://example.com:8080/path"),
    ],
)
def test_redact_text_masks_passwords_and_credentials(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_the_processor_masks_secret_fields_and_secrets_inside_values() -> None:
    event = {
        "event": "connect failed: postgresql://u:hunter2@db/x",
        "authorization": "Bearer tf_secret",
        "headers": {"Authorization": "Bearer tf_secret", "accept": "json"},
        "urls": ["redis://:hunter3@r/0"],
        "count": 3,
    }
    out = redact_secrets(None, "info", event)
    assert "hunter" not in json.dumps(out)
    assert "tf_secret" not in json.dumps(out)
    assert out["headers"]["accept"] == "json"
    assert out["count"] == 3


def test_configured_logging_redacts_std_and_structlog_records(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    try:
        structlog.get_logger("t").warning("db down", url="postgresql://u:hunter2@db/x")
        logging.getLogger("t").error("redis at redis://:hunter3@r/0 refused Bearer tf_secret")
        try:
            raise ConnectionError("postgresql://u:hunter4@db/x")
        except ConnectionError:
            structlog.get_logger("t").exception("failed")
    finally:
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "db down" in err
    assert "failed" in err
    for secret in ("hunter2", "hunter3", "hunter4", "tf_secret"):
        assert secret not in err
