"""The pin store: `data_dir/pins.json`, the approved, held and rejected definition of every upstream tool.

Every change is a read-modify-write under the file's lock (`config.files.locked`) ending in an
atomic replace, so the running gateway and `mcp-aggregator tools approve|reject` never lose each
other's writes. The gateway notices the CLI's writes by the file's stamp (`Gate.watch`).

    {"version": 1, "servers": {"<server>": {
        "pinned":   {"<tool>": {"fingerprint", "definition", "by", "at"}},
        "held":     {"<tool>": {"fingerprint", "definition", "reason", "findings", "at"}},
        "rejected": {"<tool>": {"fingerprint", "definition", "by", "at"}}}}}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from aggregator.config.files import locked, stamp, write_atomically
from aggregator.errors import ConfigError, ConfigIssue
from aggregator.trust.definition import Definition

_T = TypeVar("_T")


class Pin(TypedDict):
    """A definition an operator (or a server's first listing) approved, or rejected."""

    fingerprint: str
    definition: Definition
    by: str
    at: str


class Held(TypedDict):
    """A definition that is not served until an operator approves it."""

    fingerprint: str
    definition: Definition
    reason: str
    findings: list[dict[str, str]]
    at: str


class ServerPins(TypedDict):
    pinned: dict[str, Pin]
    held: dict[str, Held]
    rejected: dict[str, Pin]


Pins = dict[str, ServerPins]
"""Every server's pins, by server name."""

_DOCUMENT = TypeAdapter(Pins)


def now() -> str:
    """The time as the pin store and the audit log write it (UTC, ISO 8601)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def server_pins(pins: Pins, server: str) -> ServerPins:
    """`pins[server]`, created empty when the server has none yet."""
    return pins.setdefault(server, {"pinned": {}, "held": {}, "rejected": {}})


class PinStore:
    """The pins file of one data_dir; every method is blocking file I/O (call it from a worker thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Pins:
        """The stored pins (empty when the file does not exist yet); `ConfigError` when it cannot be used."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise self._error(f"the pin store cannot be read: {error.strerror}") from None
        try:
            document: Any = json.loads(text)
            return _DOCUMENT.validate_python(document.get("servers", {}) if isinstance(document, dict) else None)
        except (ValueError, ValidationError) as error:
            reason = error.errors()[0]["msg"] if isinstance(error, ValidationError) else str(error)
            raise self._error(f"the pin store is malformed: {reason}") from None

    def update(self, change: Callable[[Pins], _T]) -> tuple[_T, Pins]:
        """Apply `change` to the stored pins under the lock and write them back atomically.

        Returns what `change` returned and the pins as written. Nothing is written when `change` raises.
        """
        with locked(self.path):
            pins = self.read()
            result = change(pins)
            text = json.dumps({"version": 1, "servers": pins}, indent=1, sort_keys=True, ensure_ascii=True)
            write_atomically(self.path, text + "\n")
        return result, pins

    def stamp(self) -> tuple[int, int] | None:
        """Changes whenever the file is written (by this process or another)."""
        return stamp(self.path)

    def _error(self, reason: str) -> ConfigError:
        return ConfigError([ConfigIssue(str(self.path), "", reason)])
