"""JSON as PostgreSQL's jsonb stores it: orjson, minus what jsonb refuses."""

from __future__ import annotations

import re
from typing import Any

import orjson

# An escaped NUL (\u0000) that is not itself an escaped backslash followed by "u0000".
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class NotStorableJSON(ValueError):
    """The value is not JSON, or is JSON that jsonb refuses."""


def dumps_storable(value: Any) -> bytes:
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise NotStorableJSON(str(exc)) from exc
    if _NUL.search(encoded):
        raise NotStorableJSON("strings must not contain the NUL character (\\u0000)")
    return encoded
