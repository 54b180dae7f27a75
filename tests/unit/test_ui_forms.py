"""The dashboard's submit form: inputs from a JSON Schema, and the form's text back to JSON values."""

from __future__ import annotations

from starlette.datastructures import FormData

from taskflow_api.ui.forms import fields_for, payload_from_form

SCHEMA = {
    "type": "object",
    "required": ["seconds"],
    "properties": {
        "seconds": {"type": "number", "minimum": 0, "maximum": 3600, "title": "Seconds"},
        "times": {"type": "integer", "default": -1, "minimum": -1},
        "name": {"type": "string", "maxLength": 10},
        "loud": {"type": "boolean", "default": False},
        "colour": {"enum": ["red", "blue"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


def test_each_property_gets_an_input_of_its_kind() -> None:
    fields = {f.name: f for f in fields_for(SCHEMA)}
    assert {n: f.kind for n, f in fields.items()} == {
        "seconds": "number",
        "times": "integer",
        "name": "text",
        "loud": "boolean",
        "colour": "enum",
        "tags": "json",
    }
    assert fields["seconds"].required
    assert (fields["seconds"].minimum, fields["seconds"].maximum) == (0, 3600)
    assert fields["times"].shown({}) == "-1"
    assert fields["times"].step == "1"
    assert fields["name"].max_length == 10
    assert fields["colour"].choices == ["red", "blue"]


def test_the_form_text_becomes_json_values() -> None:
    form = FormData(
        [
            ("payload.seconds", "2.5"),
            ("payload.times", "3"),
            ("payload.name", "ada"),
            ("payload.loud", "true"),
            ("payload.colour", "blue"),
            ("payload.tags", '["a", "b"]'),
        ]
    )
    payload, errors = payload_from_form(fields_for(SCHEMA), form)
    assert errors == []
    assert payload == {"seconds": 2.5, "times": 3, "name": "ada", "loud": True, "colour": "blue", "tags": ["a", "b"]}


def test_empty_fields_are_left_out_and_bad_text_is_named() -> None:
    form = FormData(
        [("payload.seconds", "inf"), ("payload.times", "1.5"), ("payload.tags", "[oops"), ("payload.name", "")]
    )
    payload, errors = payload_from_form(fields_for(SCHEMA), form)
    assert payload == {"loud": False}
    assert {e["field"] for e in errors} == {"payload.seconds", "payload.times", "payload.tags"}
