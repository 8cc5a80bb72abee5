"""The namespaced view of every upstream's capabilities: exported name <-> (upstream, original name).

Tools and prompts are exported as `<prefix>__<name>`; resources and resource templates as
`<prefix>+<uri>` (the prefix joins the URI scheme: `weather+weather://cities`,
`notes+file:///a.txt`), so two upstreams' URIs never collide and the result is still a URI. The
prefix defaults to the server name; an empty prefix exports the upstream's own names and URIs.
Resolution goes through the maps, never by splitting strings, except for URIs made from a
template, which are routed by their prefix (they cannot be listed ahead of time).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import mcp_types as types

from aggregator.errors import UnknownNameError
from aggregator.registry.models import exported_prefix
from aggregator.trust.gate import Gate
from aggregator.upstreams.upstream import Upstream

logger = logging.getLogger(__name__)

SEPARATOR = "__"
URI_SEPARATOR = "+"

_ItemT = TypeVar("_ItemT", types.Tool, types.Prompt, types.Resource, types.ResourceTemplate)


@dataclass(frozen=True, slots=True)
class Entry(Generic[_ItemT]):
    """One exported capability: what callers see, and where a request for it goes."""

    item: _ItemT
    upstream: str
    original_name: str


CatalogTool = Entry[types.Tool]
Visible = Callable[[Entry[_ItemT]], bool]


def exported_name(prefix: str, name: str) -> str:
    """The name a caller sees for the upstream tool or prompt `name`."""
    return f"{prefix}{SEPARATOR}{name}" if prefix else name


def exported_uri(prefix: str, uri: str) -> str:
    """The URI (or URI template) a caller sees for the upstream's `uri`."""
    return f"{prefix}{URI_SEPARATOR}{uri}" if prefix else uri


def _everything(entry: Entry[_ItemT]) -> bool:
    return True


class Catalog:
    """Every upstream's capabilities under their exported names; rebuilt whenever an upstream changes."""

    def __init__(self, gate: Gate | None = None) -> None:
        self.gate = gate
        """Decides which listed tools are served (`aggregator.trust`); None serves every tool as listed."""
        self._prefixes: dict[str, str] = {}
        self._tools: dict[str, Entry[types.Tool]] = {}
        self._prompts: dict[str, Entry[types.Prompt]] = {}
        self._resources: dict[str, Entry[types.Resource]] = {}
        self._templates: dict[str, Entry[types.ResourceTemplate]] = {}
        self.version = 0

    def rebuild(self, upstreams: Iterable[Upstream]) -> None:
        """Recompute the maps from the upstreams' last known listings, in registration order.

        An upstream that is down keeps its last known capabilities listed, so a request for one of
        them fails with an error naming the upstream rather than an unknown name. Tools the gate holds
        are left out here, the one place every list, call, finder index and lean path reads from.
        """
        upstreams = list(upstreams)
        self._prefixes = {u.name: exported_prefix(u.name, u.spec) for u in upstreams}
        maps = (
            self._build(upstreams, self._served_tools, "name", exported_name),
            self._build(upstreams, lambda u: u.listing.prompts, "name", exported_name),
            self._build(upstreams, lambda u: u.listing.resources, "uri", exported_uri),
            self._build(upstreams, lambda u: u.listing.templates, "uri_template", exported_uri),
        )
        if maps != (self._tools, self._prompts, self._resources, self._templates):
            self.version += 1
        self._tools, self._prompts, self._resources, self._templates = maps  # type: ignore[assignment]

    def _build(
        self,
        upstreams: list[Upstream],
        items: Callable[[Upstream], Iterable[_ItemT]],
        key: str,
        export: Callable[[str, str], str],
    ) -> dict[str, Entry[_ItemT]]:
        entries: dict[str, Entry[_ItemT]] = {}
        for upstream in upstreams:
            prefix = self._prefixes[upstream.name]
            for item in items(upstream):
                original = getattr(item, key)
                name = export(prefix, original)
                if (existing := entries.get(name)) is not None:
                    logger.error(
                        "catalog.collision", extra={"item": name, "kept": existing.upstream, "dropped": upstream.name}
                    )
                    continue
                exported = item if name == original else item.model_copy(update={key: name})
                entries[name] = Entry(exported, upstream.name, original)
        return entries

    def _served_tools(self, upstream: Upstream) -> tuple[types.Tool, ...]:
        if self.gate is None:
            return upstream.listing.tools
        return self.gate.admit(upstream.name, upstream.spec, upstream.listing.tools)

    def prefix_of(self, server: str) -> str:
        """The prefix under which `server` exports its capabilities."""
        return self._prefixes[server]

    def tools(self, visible: Visible[types.Tool] = _everything) -> list[Entry[types.Tool]]:
        return [entry for entry in self._tools.values() if visible(entry)]

    def prompts(self, visible: Visible[types.Prompt] = _everything) -> list[Entry[types.Prompt]]:
        return [entry for entry in self._prompts.values() if visible(entry)]

    def resources(self, visible: Visible[types.Resource] = _everything) -> list[Entry[types.Resource]]:
        return [entry for entry in self._resources.values() if visible(entry)]

    def templates(self, visible: Visible[types.ResourceTemplate] = _everything) -> list[Entry[types.ResourceTemplate]]:
        return [entry for entry in self._templates.values() if visible(entry)]

    def resolve_tool(self, name: str, visible: Visible[types.Tool] = _everything) -> Entry[types.Tool]:
        """Where a call to the exported tool `name` goes.

        A tool the caller may not see is reported exactly like one that does not exist, and only
        visible names are suggested, so errors reveal nothing the caller may not know.
        """
        return _resolve("tool", self._tools, name, visible)

    def resolve_prompt(self, name: str, visible: Visible[types.Prompt] = _everything) -> Entry[types.Prompt]:
        """Where a request for the exported prompt `name` goes (same secrecy as tools)."""
        return _resolve("prompt", self._prompts, name, visible)

    def resolve_resource(self, uri: str, visible: Callable[[str], bool]) -> tuple[str, str]:
        """(upstream, original URI) for an exported resource URI, listed or made from a template.

        `visible(server)` says whether the caller may read that server's resources.
        """
        if (entry := self._resources.get(uri)) is not None and visible(entry.upstream):
            return entry.upstream, entry.original_name
        for server, prefix in self._prefixes.items():
            if prefix and uri.startswith(prefix + URI_SEPARATOR) and visible(server):
                return server, uri[len(prefix) + len(URI_SEPARATOR) :]
        unprefixed = [s for s, p in self._prefixes.items() if not p and visible(s)]
        templated = {entry.upstream for entry in self._templates.values() if entry.upstream in unprefixed}
        if len(templated) == 1:
            return templated.pop(), uri
        raise UnknownNameError("resource", uri, [])

    def resolve_template(self, uri_template: str, visible: Callable[[str], bool]) -> tuple[str, str]:
        """(upstream, original template) for an exported URI template (for completions)."""
        entry = self._templates.get(uri_template)
        if entry is None or not visible(entry.upstream):
            raise UnknownNameError("resource template", uri_template, [])
        return entry.upstream, entry.original_name


def _resolve(kind: str, entries: dict[str, Entry[_ItemT]], name: str, visible: Visible[_ItemT]) -> Entry[_ItemT]:
    entry = entries.get(name)
    if entry is not None and visible(entry):
        return entry
    candidates = [n for n, e in entries.items() if visible(e)]
    raise UnknownNameError(kind, name, difflib.get_close_matches(name, candidates, n=3, cutoff=0.6))
