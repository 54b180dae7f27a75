"""Request bodies: orjson parses first, the json module decides whatever orjson refuses, so every
body is accepted or refused exactly as the json module (with NaN and Infinity refused) would."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from taskflow_api._strict_json import loads_strict


def reference(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)

    return json.loads(body, parse_constant=refuse)


BODIES = [
    b'{"task_type": "test", "payload": {"n": [1, 2.5, -0.0, "x", null, true, false]}}',
    b'{"big": 123456789012345678901234567890}',  # beyond 64 bits: orjson would make it a float
    b'{"edge": 18446744073709551616, "neg": -9223372036854775809}',
    b'{"digits": "1234567890123456789012"}',
    b'{"deep": 1e400}',  # out of range: orjson refuses, the json module reads inf
    b'{"tiny": 1e-400, "exp": 1E5}',
    b'{"s": "\\ud800"}',  # a lone surrogate
    b'{"nul": "\\u0000", "dup": 1, "dup": 2}',
    b'\xef\xbb\xbf{"bom": 1}',
    '{"utf16": 1}'.encode("utf-16"),
    b"  [1, 2]  ",
]
REFUSED = [b"NaN", b'{"x": Infinity}', b'{"x": -Infinity}', b"[1,]", b"", b"{", b"\xff", b'{"a" 1}']


@pytest.mark.parametrize("body", BODIES)
def test_accepted_bodies_read_as_the_json_module_reads_them(body: bytes) -> None:
    got, want = loads_strict(body), reference(body)
    assert repr(got) == repr(want)  # repr: ints stay ints, -0.0 stays -0.0, types match


@pytest.mark.parametrize("body", REFUSED)
def test_refused_bodies_raise_what_the_json_module_raises(body: bytes) -> None:
    try:
        reference(body)
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not text
        expected = exc
    else:
        pytest.fail(f"the json module accepted {body!r}")
    with pytest.raises(type(expected), match=re.escape(str(expected))):
        loads_strict(body)
