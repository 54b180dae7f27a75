"""``taskflow-api keygen``: mint an API key and print the entry to add to ``TASKFLOW_API_KEYS``."""

from __future__ import annotations

import argparse
import secrets
import sys

import orjson

from taskcore.settings import ApiKeyEntry
from taskflow_api.auth import Scope, hash_key

KEY_PREFIX = "tf_"


def new_key() -> str:
    """256 random bits, URL-safe: long enough that a plain SHA-256 of it is a safe thing to store."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def entry_for(name: str, raw_key: str, scopes: list[Scope]) -> ApiKeyEntry:
    return ApiKeyEntry.model_validate({"name": name, "sha256": hash_key(raw_key), "scopes": [s.value for s in scopes]})


def _scopes(value: str) -> list[Scope]:
    try:
        return [Scope(part.strip()) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"scopes are a comma-separated subset of {', '.join(Scope)}") from exc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="taskflow-api keygen",
        description="Mint an API key. The key is shown once; only its SHA-256 digest goes into TASKFLOW_API_KEYS.",
    )
    parser.add_argument("--name", required=True, help="who holds the key (shown in logs, never the key)")
    parser.add_argument("--scopes", type=_scopes, default=[Scope.TASKS_READ], help="e.g. tasks:read,tasks:write")
    parser.add_argument("--json", action="store_true", help='print {"key": ..., "entry": ...} on one line')
    args = parser.parse_args(argv)
    if not args.scopes:
        parser.error("at least one scope")
    raw_key = new_key()
    try:
        entry = entry_for(args.name, raw_key, args.scopes)
    except ValueError as exc:
        parser.error(str(exc))
    line = entry.model_dump_json()
    if args.json:
        sys.stdout.write(orjson.dumps({"key": raw_key, "entry": orjson.loads(line)}).decode() + "\n")
    else:
        sys.stdout.write(
            f"API key (shown once; give it to the client, it sends 'Authorization: Bearer <key>'):\n  {raw_key}\n"
            f"Entry for TASKFLOW_API_KEYS (a JSON list of such entries):\n  {line}\n"
        )
    return 0
