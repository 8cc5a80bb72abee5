"""A tool's arguments as typed into the try-it form: one text field per property of its input schema.

Each field is read by its property's JSON type (`3` is an integer where the schema says so, a
string where it says string); objects and arrays are typed as JSON. An empty field is left out,
so the tool's default applies; a required one must be filled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCALARS = ("string", "integer", "number", "boolean")
TRUE, FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


class ArgumentError(ValueError):
    """Raised when a field cannot be read as its property's type; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Field:
    """One property of a tool's input: its name, how it is read, and what to show as a hint."""

    name: str
    kind: str
    """A JSON type of `SCALARS`, or "json" for anything else (objects, arrays, unions)."""
    required: bool
    hint: str


def fields_of(schema: Mapping[str, Any] | None) -> tuple[Field, ...]:
    """The form's fields for an input schema, required ones first (in schema order otherwise)."""
    properties: Mapping[str, Any] = (schema or {}).get("properties") or {}
    required = set((schema or {}).get("required") or ())
    fields = [
        _field(name, spec if isinstance(spec, Mapping) else {}, name in required) for name, spec in properties.items()
    ]
    return tuple(sorted(fields, key=lambda field: not field.required))


def _field(name: str, spec: Mapping[str, Any], required: bool) -> Field:
    kind = _kind(spec)
    hint = kind if kind != "json" else "JSON"
    if "default" in spec:
        hint += f", default {json.dumps(spec['default'])}"
    if "enum" in spec:
        hint += f", one of {', '.join(json.dumps(value) for value in spec['enum'])}"
    if description := str(spec.get("description") or "").strip():
        hint += f": {description}"
    return Field(name, kind, required, hint)


def _kind(spec: Mapping[str, Any]) -> str:
    declared = spec.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or ())
    if not types:  # `anyOf: [{type: string}, {type: null}]`, as pydantic writes `str | None`
        types = [option.get("type") for option in spec.get("anyOf") or () if isinstance(option, Mapping)]
    kinds = [kind for kind in types if kind != "null"]
    return kinds[0] if len(kinds) == 1 and kinds[0] in SCALARS else "json"


def read_arguments(fields: tuple[Field, ...], values: Mapping[str, str]) -> dict[str, Any]:
    """The arguments of a call: every filled field read as its type. Raises `ArgumentError`."""
    arguments: dict[str, Any] = {}
    for field in fields:
        text = values.get(field.name, "").strip() if field.kind != "string" else values.get(field.name, "")
        if text == "":
            if field.required:
                raise ArgumentError(field.name, "required.")
            continue
        arguments[field.name] = _read(field, text)
    return arguments


def _read(field: Field, text: str) -> Any:
    try:
        if field.kind == "string":
            return text
        if field.kind == "integer":
            return int(text)
        if field.kind == "number":
            return float(text)
        if field.kind == "boolean":
            if text.lower() not in TRUE | FALSE:
                raise ArgumentError(field.name, "type true or false.")
            return text.lower() in TRUE
        return json.loads(text)
    except ValueError as error:
        if isinstance(error, ArgumentError):
            raise
        what = {"integer": "a whole number", "number": "a number"}.get(field.kind, "JSON")
        raise ArgumentError(field.name, f"not {what}: {text!r}.") from None
