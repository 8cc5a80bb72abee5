"""The namespaced view of every upstream's tools: exported name <-> (upstream, original name).

Exported names are `<prefix>__<tool>` (the prefix defaults to the server name; an empty prefix
exports the upstream's own names). Resolution always goes through this map, never by splitting
strings, so a tool whose own name contains `__` still resolves to the right upstream.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import mcp_types as types

from aggregator.config import ServersFile, exported_prefix
from aggregator.errors import UnknownNameError
from aggregator.upstreams.upstream import Upstream

logger = logging.getLogger(__name__)

SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class CatalogTool:
    """One exported tool: what callers see, and where a call goes."""

    tool: types.Tool
    upstream: str
    original_name: str


def exported_name(prefix: str, name: str) -> str:
    """The name a caller sees for the upstream capability `name`."""
    return f"{prefix}{SEPARATOR}{name}" if prefix else name


class Catalog:
    """Every upstream's tools under their exported names; rebuilt whenever an upstream changes."""

    def __init__(self, servers: ServersFile) -> None:
        self._prefixes = {name: exported_prefix(name, spec) for name, spec in servers.servers.items()}
        self._tools: dict[str, CatalogTool] = {}
        self.version = 0

    def rebuild(self, upstreams: Iterable[Upstream]) -> None:
        """Recompute the map from the upstreams' last known listings, in registration order.

        An upstream that is down keeps its last known tools listed, so a call to one of them
        fails with an error naming the upstream rather than an unknown name.
        """
        tools: dict[str, CatalogTool] = {}
        for upstream in upstreams:
            prefix = self._prefixes[upstream.name]
            for tool in upstream.tools:
                name = exported_name(prefix, tool.name)
                if (existing := tools.get(name)) is not None:
                    logger.error(
                        "catalog.collision",
                        extra={"tool": name, "kept": existing.upstream, "dropped": upstream.name},
                    )
                    continue
                exported = tool if name == tool.name else tool.model_copy(update={"name": name})
                tools[name] = CatalogTool(exported, upstream.name, tool.name)
        if tools.keys() != self._tools.keys() or any(tools[n].tool != self._tools[n].tool for n in tools):
            self.version += 1
        self._tools = tools

    def prefix_of(self, server: str) -> str:
        """The prefix under which `server` exports its capabilities."""
        return self._prefixes[server]

    def entries(self) -> list[CatalogTool]:
        """Every exported tool with its origin, in registration order."""
        return list(self._tools.values())

    def tools(self) -> list[types.Tool]:
        """Every exported tool, in registration order."""
        return [entry.tool for entry in self._tools.values()]

    def resolve_tool(self, name: str, visible: Callable[[CatalogTool], bool] = lambda _: True) -> CatalogTool:
        """Where a call to the exported tool `name` goes.

        A tool the caller may not see is reported exactly like one that does not exist, and only
        visible names are suggested, so errors reveal nothing the caller may not know.
        """
        entry = self._tools.get(name)
        if entry is not None and visible(entry):
            return entry
        candidates = [n for n, e in self._tools.items() if visible(e)]
        raise UnknownNameError("tool", name, difflib.get_close_matches(name, candidates, n=3, cutoff=0.6))
