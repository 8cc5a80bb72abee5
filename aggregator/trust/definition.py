"""A tool's definition as pinned: name, title, description, input and output schema, annotations.

The fingerprint is the sha256 of the definition's canonical JSON (sorted keys, no spaces), so the
same definition always gives the same fingerprint, whichever order the upstream sent its keys in.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Any

import mcp_types as types

Definition = dict[str, Any]
"""A tool's definition as plain JSON (what the pin store keeps and the diff shows)."""


def definition_of(tool: types.Tool) -> Definition:
    """The parts of `tool` that tell a model what it does and how to call it."""
    annotations = (
        tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True) if tool.annotations else None
    )
    return {
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
        "annotations": annotations,
    }


def fingerprint(definition: Definition) -> str:
    """`sha256:<hex>` of the canonical JSON of `definition`."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def diff(old: Definition | None, new: Definition, *, label: str = "tool") -> str:
    """A unified diff of two definitions as indented JSON; every line is new when there was none before."""
    before = _lines(old) if old is not None else []
    after = _lines(new)
    return "".join(difflib.unified_diff(before, after, f"{label} (pinned)", f"{label} (offered)", n=3))


def _lines(definition: Definition) -> list[str]:
    # ensure_ascii shows invisible and bidi characters as \u escapes: the diff cannot hide them.
    return [line + "\n" for line in json.dumps(definition, sort_keys=True, indent=2, ensure_ascii=True).splitlines()]
