"""The submit form, driven by a task type's JSON Schema: one input per payload property.

Scalars get typed inputs (text, number with its bounds, checkbox, select for an enum);
anything else (objects, arrays, unions) gets a JSON textarea. The server converts what
the browser sends back to JSON values; the registry then validates the payload as the
API does, so the form needs no rules of its own beyond the input types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.datastructures import FormData

from taskcore.registry import TaskType
from taskflow_api.schemas import TaskCreate

PREFIX = "payload."
OPTIONS = ("priority", "max_retries", "timeout_seconds", "delay_seconds")  # the form's inputs besides the payload


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    label: str
    kind: str  # text | integer | number | boolean | enum | json
    required: bool
    description: str = ""
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    choices: list[str] = field(default_factory=list)

    @property
    def input_name(self) -> str:
        return PREFIX + self.name

    @property
    def step(self) -> str:
        return "1" if self.kind == "integer" else "any"

    def shown(self, values: dict[str, str]) -> str:
        """The value to put in the input: what was sent, else the schema's default."""
        if self.input_name in values:
            return values[self.input_name]
        if self.default is None:
            return ""
        if self.kind == "json":
            return orjson.dumps(self.default).decode()
        return str(self.default).lower() if isinstance(self.default, bool) else str(self.default)


def _kind(prop: dict[str, Any]) -> str:
    if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
        return "enum"
    kind = prop.get("type")
    if kind == "string":
        return "text"
    if kind in {"integer", "number", "boolean"}:
        return str(kind)
    return "json"


def fields_for(schema: dict[str, Any]) -> list[FieldSpec]:
    required = set(schema.get("required", []))
    specs = []
    for name, prop in schema.get("properties", {}).items():
        minimum = prop.get("minimum", prop.get("exclusiveMinimum"))
        maximum = prop.get("maximum", prop.get("exclusiveMaximum"))
        specs.append(
            FieldSpec(
                name=name,
                label=str(prop.get("title") or name),
                kind=_kind(prop),
                required=name in required,
                description=str(prop.get("description", "")),
                default=prop.get("default"),
                minimum=minimum,
                maximum=maximum,
                max_length=prop.get("maxLength"),
                choices=[str(v) for v in prop.get("enum", [])],
            )
        )
    return specs


def task_from_form(task_type: TaskType, form: FormData) -> tuple[TaskCreate | None, list[dict[str, Any]]]:
    """The body the form describes, as the API would read it (None, and every field error, if it is not valid)."""
    payload, errors = payload_from_form(fields_for(task_type.json_schema()), form)
    options = {}
    for name in OPTIONS:
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            options[name] = value
    try:
        body = TaskCreate.model_validate({"task_type": task_type.name, "payload": payload, **options})
    except ValidationError as exc:
        return None, [
            *errors,
            *({"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()),
        ]
    return (None, list(errors)) if errors else (body, [])


def payload_from_form(specs: list[FieldSpec], form: FormData) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The payload the form describes, and the fields whose text is not even the right kind of value."""
    payload: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for spec in specs:
        raw = form.get(spec.input_name)
        if spec.kind == "boolean":
            payload[spec.name] = raw is not None
            continue
        text = raw.strip() if isinstance(raw, str) else ""
        if text == "":
            continue  # left empty: the schema's default applies, or the registry says it is required
        try:
            payload[spec.name] = _convert(spec.kind, text)
        except ValueError as exc:
            errors.append({"field": f"payload.{spec.name}", "message": str(exc)})
    return payload, errors


def _convert(kind: str, text: str) -> Any:
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError("must be a whole number") from None
    if kind == "number":
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return int(value) if value.is_integer() and "." not in text else value
    if kind == "json":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ValueError("must be JSON") from None
    return text
