"""YAML files read with the line of every key, so configuration errors can point at the line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
