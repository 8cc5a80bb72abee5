"""The name budget: hosts build `mcp__<gateway>__<tool>` and cap it (Claude 64 characters, Cursor ~60)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)


def host_name(host_server_name: str, exported: str) -> str:
    """The name a host like Claude Code shows for one of the gateway's tools."""
    return f"mcp__{host_server_name}__{exported}"


def over_budget(names: Iterable[str], host_server_name: str, budget: int) -> list[tuple[str, int]]:
    """Exported names whose host-side name passes `budget`, with that length; shortest fix: a `prefix`."""
    found = []
    for name in names:
        length = len(host_name(host_server_name, name))
        if length > budget:
            found.append((name, length))
    return found


class BudgetWarnings:
    """Logs each over-budget name once, when it first appears in the catalog."""

    def __init__(self, host_server_name: str, budget: int) -> None:
        self._host = host_server_name
        self._budget = budget
        self._warned: set[str] = set()

    def check(self, names: Iterable[str]) -> None:
        for name, length in over_budget(names, self._host, self._budget):
            if name not in self._warned:
                self._warned.add(name)
                logger.warning(
                    "names.over_budget",
                    extra={
                        "tool": name,
                        "host_name_length": length,
                        "budget": self._budget,
                        "hint": "set a shorter `prefix` for its server",
                    },
                )
