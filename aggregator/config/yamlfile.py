"""YAML files read with the line of every key, so configuration errors can point at the line; and
edited in place (`edit_yaml`), so a change the gateway makes keeps the operator's comments and layout.

Reading uses PyYAML (YAML 1.1, as every other reader of these files); editing uses ruamel.yaml's
round trip, and its result is read back with PyYAML and must say exactly what was meant.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import ruamel.yaml
import yaml
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.error import YAMLError as RoundTripError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString
from ruamel.yaml.tokens import CommentToken

from aggregator.errors import ConfigError, ConfigIssue


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed YAML file: its data and the 1-based line where each key path starts."""

    path: Path
    data: Any
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def line_of(self, location: tuple[str, ...]) -> int | None:
        """The line of the longest prefix of `location` that exists in the file."""
        for end in range(len(location), -1, -1):
            if (line := self.lines.get(location[:end])) is not None:
                return line
        return None


def read_yaml(path: Path) -> YamlDocument:
    """Parse `path` safely; a missing file or a syntax error is a `ConfigError` naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(path), "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([ConfigIssue(str(path), "", f"cannot be read: {error}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError([ConfigIssue(str(path), "", f"invalid YAML: {problem}", line)]) from None
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return YamlDocument(path, data, lines)


def _collect_lines(node: yaml.Node, location: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> None:
    lines.setdefault(location, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*location, str(key_node.value))
            lines[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, (*location, str(index)), lines)


def edit_yaml(text: str, before: Any, after: Any) -> str | None:
    """`text` with the change from `before` to `after` made in place, or None if that is not possible.

    `before` is the plain data `read_yaml` read from `text`; `after` is that data edited. Only the
    keys whose values differ are written: the operator's comments, key order, quoting, indentation
    and flow style stay as they were. The result is read back (as `read_yaml` reads it) and must
    give exactly `after`; when it would not (YAML a round trip cannot reproduce), the answer is
    None and the caller writes the file whole.
    """
    round_trip = _round_trip(text)
    try:
        document = round_trip.load(text)
    except RoundTripError:
        return None
    if document is None:
        document = CommentedMap()
    if not (isinstance(document, CommentedMap) and isinstance(before, dict) and isinstance(after, dict)):
        return None
    if orphans := _merge(document, before, after):  # comment lines of a mapping that is now empty
        document.ca.end = [CommentToken(orphans, CommentMark(0)), *(document.ca.end or [])]
    output = io.StringIO()
    round_trip.dump(document, output)
    edited = output.getvalue()
    try:
        faithful = yaml.safe_load(edited) == after
    except yaml.YAMLError:
        faithful = False
    return edited if faithful else None


def _round_trip(text: str) -> ruamel.yaml.YAML:
    """A round-trip YAML that writes new lines the way `text` is indented."""
    mapping, offset = _indentation(text)
    round_trip = ruamel.yaml.YAML(typ="rt")
    round_trip.preserve_quotes = True
    round_trip.width = 4096  # never re-wrap the operator's long lines
    round_trip.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    round_trip.explicit_start = _EXPLICIT_START.match(text) is not None
    return round_trip


_EXPLICIT_START = re.compile(r"\A(?:\s*#[^\n]*\n|\s*\n)*---(?:\s|$)")
_KEY_LINE = re.compile(r"^( *)[^\s#-][^#]*:\s*(?:#.*)?$")
_ITEM_LINE = re.compile(r"^( *)- ")


def _indentation(text: str) -> tuple[int, int]:
    """(mapping indent, sequence dash offset) as used in `text`; PyYAML's (2, 0) when it does not say."""
    mapping = offset = None
    parent: int | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if parent is not None and indent > parent:
            if _ITEM_LINE.match(line):
                offset = indent - parent if offset is None else offset
            elif mapping is None:
                mapping = indent - parent
        parent = indent if _KEY_LINE.match(line) else None
    return mapping or 2, offset or 0


def _merge(node: CommentedMap, before: dict[Any, Any], after: dict[Any, Any], owner: Owner = None) -> str:
    """Make `node` (read from the file) say `after` instead of `before`, touching only what differs.

    `owner` is the mapping and key that hold `node` (None for the document itself). Returns the
    comment lines that lost their place (below an entry of a mapping that is now empty).
    """
    orphans = ""
    for key in [key for key in before if key not in after and key in node]:
        orphans += _delete(node, key, owner)
    for key, value in after.items():
        if key not in before or key not in node:
            _append(node, key, _fresh(value))
            continue
        old, current = before[key], node[key]
        if _same(old, value):
            continue
        if isinstance(old, dict) and isinstance(value, dict) and isinstance(current, CommentedMap):
            orphans += _merge(current, old, value, (node, key))
        else:
            node[key] = _fresh(value, like=current)
    return orphans


def _same(left: Any, right: Any) -> bool:
    """Equal and of the same types throughout (`1 == True` in Python, not in YAML)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same(left[key], right[key]) for key in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


def _fresh(value: Any, like: Any = None) -> Any:
    """`value` as round-trip nodes; strings quoted whenever PyYAML would read them as something else
    (`yes`, `on`, `0777`, `1:20`), and in the quoting of the value it replaces (`like`)."""
    if isinstance(value, dict):
        mapping = CommentedMap((key, _fresh(item)) for key, item in value.items())
        if isinstance(like, CommentedMap) and like.fa.flow_style():
            mapping.fa.set_flow_style()
        return mapping
    if isinstance(value, list):
        sequence = CommentedSeq(_fresh(item) for item in value)
        if isinstance(like, CommentedSeq) and like.fa.flow_style():
            sequence.fa.set_flow_style()
        return sequence
    if isinstance(value, str):
        if isinstance(like, ScalarString) and type(like) is not ScalarString:
            return type(like)(value)
        if _plain_tag(yaml.ScalarNode, value, (True, False)) != "tag:yaml.org,2002:str":
            return DoubleQuotedScalarString(value)
    return value


_plain_tag = cast(Callable[[type[yaml.Node], str, tuple[bool, bool]], str], yaml.resolver.Resolver().resolve)
"""The type PyYAML reads a plain (unquoted) scalar as."""


Owner = tuple[CommentedMap, Any] | None
Place = tuple[CommentedMap | CommentedSeq, Any, int]
"""Where the comment after a line is kept: (container, key or index, slot in its comment list)."""


def _end_of(node: CommentedMap | CommentedSeq, key: Any) -> Place:
    """The place of the comment after the last line of the entry `key` of `node`."""
    child = node[key]
    if isinstance(child, CommentedMap | CommentedSeq) and child and not child.fa.flow_style():
        return _end_of(child, next(reversed(child)) if isinstance(child, CommentedMap) else len(child) - 1)
    return node, key, 2 if isinstance(node, CommentedMap) else 0


def _take_trailer(place: Place) -> str:
    """Remove and return the comment lines after `place` (the comment at the end of its line stays)."""
    container, key, slot = place
    token = container.ca.items.get(key, [None] * 4)[slot]
    if token is None:
        return ""
    line, _, rest = str(token.value).partition("\n")
    if line.strip():
        token.value = line + "\n"
    else:
        container.ca.items[key][slot] = None
    return rest


def _give_trailer(place: Place, trailer: str) -> None:
    """Put the comment lines `trailer` after `place`."""
    if not trailer:
        return
    container, key, slot = place
    slots = container.ca.items.setdefault(key, [None] * 4)
    if slots[slot] is None:
        slots[slot] = CommentToken("\n" + trailer, CommentMark(0))
    else:
        slots[slot].value = str(slots[slot].value).partition("\n")[0] + "\n" + trailer


def _append(node: CommentedMap, key: Any, value: Any) -> None:
    """Add `key` at the end of `node`; the comment lines that followed the old last entry follow the new one."""
    trailer = _take_trailer(_end_of(node, next(reversed(node)))) if node else ""
    node[key] = value
    _give_trailer(_end_of(node, key), trailer)


def _delete(node: CommentedMap, key: Any, owner: Owner) -> str:
    """Remove `key` and the comment lines above it; the lines below it (the next entry's) stay.

    When `node` is left empty, those lines are returned: YAML has no place for them in `{}`.
    """
    keys = list(node)
    position = keys.index(key)
    below = _take_trailer(_end_of(node, key))
    del node[key]
    if position > 0:
        previous = _end_of(node, keys[position - 1])
        _take_trailer(previous)
        _give_trailer(previous, below)
        return ""
    # The lines above the first entry belong to the line that opens `node` (its owner's key).
    text = below.lstrip(" ")
    leading = [CommentToken(text, CommentMark(len(below) - len(text)))] if text and node else None
    node.ca.comment = [None, leading]
    if owner is not None and (slots := owner[0].ca.items.get(owner[1])) is not None:
        slots[3] = leading
    return "" if node else below
