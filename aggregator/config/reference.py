"""The settings reference (docs/settings.md), generated from the settings models so it cannot drift.

`mcp-aggregator config --reference` prints it; a test fails when the checked-in file differs from
what the models produce. Every key is listed with its type, default, environment variable and
description: top-level keys, nested sections (`auth`, `limits`, `nginx`; `auth.issuer` is
`MCP_AGGREGATOR_AUTH__ISSUER`), and the items of lists and maps of models (`auth.gateway_keys[]`,
`stdio_templates.<name>`), which the environment can only set whole, as JSON.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from aggregator.config.settings import LoginSettings, Settings

HEADER = """\
# Settings reference

<!-- Generated from aggregator/config/settings.py by `mcp-aggregator config --reference > docs/settings.md`.
     Do not edit by hand: tests/cli/test_reference.py fails when this file and the model differ. -->

The gateway's settings come from, highest priority first: command-line flags, environment
variables, the YAML file given with `--config`, and the defaults below. A relative
`servers_file`, `scopes_file` or `data_dir` in the YAML file is taken relative to that file's
folder. Nested keys are sections in YAML (`auth:` then `issuer:`) and `__` in the environment
(`MCP_AGGREGATOR_AUTH__ISSUER`). Lists and maps are JSON in the environment
(`MCP_AGGREGATOR_ADMIN_ALLOWED_NETWORKS='["10.20.0.0/16"]'`); the keys of an item of a list or
map of sections ("in `VARIABLE`" below) have no variable of their own: that variable sets the
whole list or map. `mcp-aggregator config --config FILE` prints the settings in effect (secrets
masked).
"""


@dataclass(frozen=True, slots=True)
class Key:
    """One documented setting: where it lives, what it holds, how to set it."""

    path: str
    type: str
    default: str
    environment: str
    description: str
    whole: bool = False
    """Whether `environment` sets the list or map this key is in (as JSON), not the key alone."""


@dataclass(frozen=True, slots=True)
class Section:
    """The keys of one model, under one heading."""

    title: str
    summary: str
    keys: tuple[Key, ...]


def sections() -> list[Section]:
    """Every section of the reference, the gateway's settings first, then `login`'s."""
    gateway = list(_sections(Settings, "", "MCP_AGGREGATOR_", "Gateway settings (top level)"))
    login = list(
        _sections(LoginSettings, "", "MCP_AGGREGATOR_LOGIN_", "`mcp-aggregator login` (flags and environment)")
    )
    return gateway + login


def render() -> str:
    """docs/settings.md: the header, then one table per section."""
    lines = [HEADER]
    for section in sections():
        lines += [f"## {section.title}", "", section.summary, ""]
        lines += ["| key | type | default | environment | description |", "|---|---|---|---|---|"]
        for key in section.keys:
            environment = f"in `{key.environment}`" if key.whole else f"`{key.environment}`"
            cells = (f"`{key.path}`", key.type, key.default, environment, key.description)
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _sections(
    model: type[BaseModel], prefix: str, environment: str, title: str, *, whole: bool = False
) -> Iterator[Section]:
    """The section of `model` (keys under `prefix`), then the sections of the models it holds.

    With `whole`, the keys are items of a list or map that `environment` (one variable) sets as JSON.
    """
    keys: list[Key] = []
    nested: list[tuple[type[BaseModel], str, str, bool]] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        variable = environment if whole else f"{environment}{name.upper()}"
        keys.append(Key(path, _type(field.annotation), _default(field), variable, _description(field), whole))
        inner = _inner_model(field.annotation)
        if inner is None:
            continue
        model_type, shape = inner
        if shape == "model":
            nested.append((model_type, f"{path}.", variable if whole else f"{variable}__", whole))
        elif shape == "list":
            nested.append((model_type, f"{path}[].", variable, True))
        else:
            placeholder = name.rsplit("_", 1)[-1].removesuffix("s")
            nested.append((model_type, f"{path}.<{placeholder}>.", variable, True))
    yield Section(title, _summary(model), tuple(keys))
    for inner_model, inner_prefix, inner_environment, inner_whole in nested:
        title = f"`{inner_prefix.rstrip('.')}`"
        yield from _sections(inner_model, inner_prefix, inner_environment, title, whole=inner_whole)


def _summary(model: type[BaseModel]) -> str:
    """The model's docstring, first paragraph, on one line."""
    return " ".join(inspect.cleandoc(model.__doc__ or "").split("\n\n")[0].split())


def _inner_model(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The model a field holds, and how: `model` (a section), `list` or `map` (of them)."""
    annotation = _without_none(annotation)
    if _is_model(annotation):
        return annotation, "model"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (tuple, list) and args and _is_model(args[0]):
        return args[0], "list"
    if origin is dict and len(args) == 2 and _is_model(args[1]):
        return args[1], "map"
    return None


def _is_model(annotation: Any) -> bool:
    return (
        inspect.isclass(annotation) and issubclass(annotation, BaseModel) and not issubclass(annotation, BaseSettings)
    )


def _without_none(annotation: Any) -> Any:
    if _is_union(annotation):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret string",
    IPv4Network: "CIDR network",
    IPv6Network: "CIDR network",
}


def _type(annotation: Any) -> str:
    """A reader's name for a field's type: `integer`, `list of string`, `"info" or "debug"`, `null or path`."""
    if annotation is type(None):
        return "null"
    if annotation in _NAMES:
        return _NAMES[annotation]
    if getattr(annotation, "__name__", "") == "IPvAnyNetwork":
        return "CIDR network"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type(args[0])
    if origin is Literal:
        return " or ".join(json.dumps(arg) for arg in args)
    if _is_union(annotation):
        members = [_type(arg) for arg in args if arg is not type(None)]
        return " or ".join(members) + (", or null" if type(None) in args else "")
    if origin in (tuple, list):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}"
    if _is_model(annotation):
        return f"section ({annotation.__name__})"
    return str(getattr(annotation, "__name__", annotation))


def _default(field: FieldInfo) -> str:
    """The default as YAML would show it; `required` when there is none."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, Path) and value.is_relative_to(Path.home()):
        return f"`~/{value.relative_to(Path.home())}`"  # machine-independent
    return f"`{json.dumps(_plain(value))}`"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _description(field: FieldInfo) -> str:
    """The field's description, with its constraints (`> 0`, `at most 8`, `matches ...`) appended."""
    parts = [field.description or ""]
    rules = list(_constraints(field.metadata))
    key = get_args(_without_none(field.annotation))
    if get_origin(_without_none(field.annotation)) is dict and key and get_origin(key[0]) is Annotated:
        rules += [f"names {rule}" for rule in _constraints(_metadata_of(key[0]))]
    if rules:
        parts.append(f"({', '.join(rules)})")
    return " ".join(part for part in parts if part)


def _metadata_of(annotated: Any) -> list[Any]:
    return [item for info in get_args(annotated)[1:] for item in getattr(info, "metadata", [info])]


def _constraints(metadata: list[Any]) -> Iterator[str]:
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            yield f"> {item.gt}"
        elif isinstance(item, annotated_types.Ge):
            yield f">= {item.ge}"
        elif isinstance(item, annotated_types.Lt):
            yield f"< {item.lt}"
        elif isinstance(item, annotated_types.Le):
            yield f"<= {item.le}"
        elif isinstance(item, annotated_types.MinLen):
            yield f"at least {item.min_length} character{'s' if item.min_length != 1 else ''}"
        elif isinstance(item, annotated_types.MaxLen):
            yield f"at most {item.max_length} characters"
        elif (pattern := getattr(item, "pattern", None)) is not None:
            yield f"matches `{pattern}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
