"""Local checks of the registration form, with the gateway's own rules, so mistakes show on the field.

The gateway checks again (and more: addresses, the template's slot patterns); its refusal is shown
as it is. A stdio server is never a command line: it is an operator's template and its slot values.
"""

from __future__ import annotations

import re
import shlex
from urllib.parse import urlsplit

from textual.validation import ValidationResult, Validator

SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
SLOT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")


class ServerName(Validator):
    """1-32 characters of a-z, 0-9 and '-', not starting with '-' (the gateway's server name rule)."""

    def validate(self, value: str) -> ValidationResult:
        if not value:
            return self.failure("A name is required.")
        if not SERVER_NAME.match(value):
            return self.failure("Use 1-32 characters: a-z, 0-9 and '-', starting with a letter or digit.")
        return self.success()


class HttpUrl(Validator):
    """An absolute http:// or https:// URL with a host."""

    def validate(self, value: str) -> ValidationResult:
        try:
            parts = urlsplit(value)
        except ValueError:
            return self.failure("This is not a URL.")
        if parts.scheme not in ("http", "https"):
            return self.failure("Use an http:// or https:// URL, e.g. http://127.0.0.1:8101/mcp.")
        if not parts.hostname:
            return self.failure("The URL needs a host, e.g. http://127.0.0.1:8101/mcp.")
        return self.success()


class Required(Validator):
    """Something must be typed."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self._what = what

    def validate(self, value: str) -> ValidationResult:
        return self.success() if value.strip() else self.failure(f"{self._what} is required.")


def slot_values(text: str) -> dict[str, str]:
    """`root=notes "title=my notes"` as {"root": "notes", "title": "my notes"}; raises ValueError."""
    values: dict[str, str] = {}
    for word in shlex.split(text):
        name, equals, value = word.partition("=")
        if not equals or not SLOT_NAME.match(name):
            raise ValueError(f"{word!r} is not slot=value")
        values[name] = value
    return values


class SlotValues(Validator):
    """A template's slot values as `slot=value` words (quote a value with spaces: "title=my notes")."""

    def validate(self, value: str) -> ValidationResult:
        try:
            slot_values(value)
        except ValueError as error:
            return self.failure(f"Give slot=value words: {error}.")
        return self.success()
