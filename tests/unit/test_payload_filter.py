"""The payload filter as the API and the dashboard read it."""

from __future__ import annotations

import pytest

from taskcore.errors import TaskValidationError
from taskflow_api.filters import parse_payload_filter
from taskflow_api.ui.filters import payload_from_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer_id = 42", {"customer_id": 42}),
        ("payload.customer_id=42", {"customer_id": 42}),
        ('region = "eu"', {"region": "eu"}),
        ("region = eu", {"region": "eu"}),
        ("tier.gold = true", {"tier": {"gold": True}}),
        ('{"customer_id": 42}', {"customer_id": 42}),
        ("  ", None),
    ],
)
def test_the_dashboard_reads_a_field_or_a_json_object(text: str, expected: object) -> None:
    assert payload_from_text(text) == expected


@pytest.mark.parametrize("text", ["customer_id", "= 4", '{"a": ', "[1, 2]", "a b = 1"])
def test_what_is_neither_is_refused_naming_payload(text: str) -> None:
    with pytest.raises(TaskValidationError) as caught:
        payload_from_text(text)
    assert caught.value.errors[0]["field"] == "payload"


@pytest.mark.parametrize("text", ["[1]", '"x"', "{nope", '{"k": "' + "x" * 5000 + '"}', '{"k": "\\u0000"}'])
def test_the_query_parameter_must_be_a_storable_object(text: str) -> None:
    with pytest.raises(TaskValidationError):
        parse_payload_filter(text)
