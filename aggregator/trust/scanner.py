"""The description scanner: flags text in a tool definition that aims instructions at the model.

Its rules are data, in `rules.json` beside this module (one file; each rule has an id, a kind, a
reason and a test). A finding names the rule, the place in the definition and a short excerpt in
which invisible characters are shown as escapes, so an operator sees what a model would read.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aggregator.trust.definition import Definition

RULES_FILE = Path(__file__).with_name("rules.json")
_EXCERPT = 60


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: a pattern searched in every text of a definition, or a length limit on one field."""

    id: str
    reason: str
    pattern: re.Pattern[str] | None = None
    field: str | None = None
    max: int | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """What one rule found, and where."""

    rule: str
    reason: str
    where: str
    excerpt: str

    def as_json(self) -> dict[str, str]:
        return {"rule": self.rule, "reason": self.reason, "where": self.where, "excerpt": self.excerpt}


@functools.cache
def load_rules(path: Path = RULES_FILE) -> tuple[Rule, ...]:
    """The rules in `path` (read once per process: they ship with the code)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    rules = []
    for entry in document["rules"]:
        if entry["kind"] == "pattern":
            rules.append(Rule(entry["id"], entry["reason"], pattern=re.compile(entry["pattern"], re.IGNORECASE)))
        elif entry["kind"] == "length":
            rules.append(Rule(entry["id"], entry["reason"], field=entry["field"], max=int(entry["max"])))
        else:
            raise ValueError(f"{path}: rule '{entry['id']}' has an unknown kind '{entry['kind']}'")
    return tuple(rules)


def scan(definition: Definition, rules: tuple[Rule, ...] | None = None) -> list[Finding]:
    """Every finding of `rules` (default: `rules.json`) in `definition`; empty when nothing is suspicious."""
    findings: list[Finding] = []
    texts = list(_texts(definition, ""))
    for rule in rules if rules is not None else load_rules():
        if rule.pattern is not None:
            for where, text in texts:
                if (match := rule.pattern.search(text)) is not None:
                    place = ascii(where)[1:-1]  # a key can hold invisible characters too
                    findings.append(Finding(rule.id, rule.reason, place, _excerpt(text, match.start())))
                    break
        elif rule.field is not None and rule.max is not None:
            value = definition.get(rule.field)
            if isinstance(value, str) and len(value) > rule.max:
                findings.append(Finding(rule.id, rule.reason, rule.field, f"{len(value)} characters"))
    return findings


def _texts(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(place, text) for every string in `value`, keys included (a property name can hide characters too)."""
    if isinstance(value, str):
        yield where or "<root>", value
    elif isinstance(value, dict):
        for key, item in value.items():
            place = f"{where}.{key}" if where else str(key)
            yield place, str(key)
            yield from _texts(item, place)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _texts(item, f"{where}[{index}]")


def _excerpt(text: str, at: int) -> str:
    start = max(0, at - _EXCERPT // 3)
    piece = text[start : start + _EXCERPT]
    return ascii(piece)[1:-1]
