"""What this gateway takes from a registry's published servers: upstream entries, available packages, skips.

`select` refuses the whole answer when a name is published twice or a remote URL points where
registration may not (`check_url`: the SSRF rules of `register_service`), so a hostile registry
cannot slip one server in among good ones.

Servers that publish the same endpoint are one upstream: another mcp-aggregator publishes its one
aggregated endpoint for each of its servers (their tools already namespaced by server there), so
an endpoint another gateway publishes, or that several servers share, is named after the registry
(`central`, then `central-2`...); an endpoint of its own is named by the prefix rule (`prefix` +
the last segment of the server's name). Package-only servers are "available": listed, never run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aggregator.errors import AccessDeniedError
from aggregator.registry.federation_answer import (
    DESCRIPTION_LIMIT,
    CheckUrl,
    Followed,
    Package,
    Published,
    RegistryAnswerError,
)
from aggregator.registry.models import SERVER_NAME_PATTERN, AnyUpstream, SseUpstream, StreamableHttpUpstream

_REMOTE_TYPES = ("streamable-http", "sse")


@dataclass(frozen=True, slots=True)
class AvailableServer:
    """A published server with packages only: listed in `list_services` as available, never run by the gateway."""

    name: str
    registry: str
    published_as: str
    version: str
    description: str
    packages: tuple[Package, ...]


@dataclass(frozen=True, slots=True)
class Following:
    """What this gateway takes from one registry's answer."""

    upstreams: dict[str, AnyUpstream] = field(default_factory=dict)
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """The published names each followed upstream stands for."""
    available: dict[str, AvailableServer] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    """Why some published servers are neither followed nor available (one sentence each)."""


def select(name: str, registry: Followed, published: Iterable[Published], check_url: CheckUrl) -> Following:
    """The upstreams and available servers `registry` (named `name`) gives, after its filters.

    Raises `RegistryAnswerError` for a name published twice or a remote URL `check_url` refuses:
    the whole answer is refused then, so a hostile registry cannot slip one server in among good ones.
    """
    seen: set[str] = set()
    endpoints: dict[tuple[str, str], list[Published]] = {}
    available: dict[str, AvailableServer] = {}
    skipped: list[str] = []
    filtered: dict[str, list[str]] = {}  # endpoint URL -> servers the filters left out
    for server in published:
        if server.name in seen:
            raise RegistryAnswerError(f"Registry '{name}' publishes '{server.name}' twice; its answer is refused.")
        seen.add(server.name)
        if not registry.wanted(server.name, server.tags):
            for offered in server.remotes:
                filtered.setdefault(offered.url, []).append(server.name)
            continue
        remote = next((r for r in server.remotes if r.type in _REMOTE_TYPES), None)
        if remote is not None and "{" in remote.url:
            remote = None
            if not server.packages:
                skipped.append(f"'{server.name}': its remote URL has variables this gateway cannot fill.")
                continue
        if remote is not None:
            _check(name, server.name, remote.url, check_url)
            endpoints.setdefault((remote.type, remote.url), []).append(server)
        elif server.packages:
            local = _local_name(registry.prefix, server.name)
            available[local or server.name] = AvailableServer(
                local or server.name, name, server.name, server.version, server.description, server.packages
            )
        else:
            skipped.append(f"'{server.name}' publishes neither a streamable-http or sse remote nor a package.")
    following = Following(available=available)
    shared = 0
    for (transport, url), servers in sorted(endpoints.items(), key=lambda item: item[0][1]):
        if len(servers) > 1 or servers[0].from_gateway:
            shared += 1
            local = name if shared == 1 else f"{name}-{shared}"
        elif (local := _local_name(registry.prefix, servers[0].name)) is None:
            skipped.append(f"'{servers[0].name}' gives no valid server name with prefix '{registry.prefix}'.")
            continue
        if local in following.upstreams:
            raise RegistryAnswerError(f"Registry '{name}' publishes two servers named '{local}' here; refused.")
        following.upstreams[local] = _entry(name, registry, transport, url, servers)
        following.members[local] = tuple(server.name for server in servers)
        skipped.extend(
            f"'{left_out}' is filtered out, but its endpoint is followed as '{local}': its tools stay reachable "
            "there unless this gateway's scopes.yml denies them."
            for left_out in filtered.get(url, ())
        )
    return Following(following.upstreams, following.members, available, tuple(skipped))


def _check(registry: str, server: str, url: str, check_url: CheckUrl) -> None:
    try:
        check_url(url)
    except AccessDeniedError as refusal:
        raise RegistryAnswerError(
            f"Registry '{registry}' publishes '{server}' at a URL registration refuses: {refusal} "
            "Its answer is refused."
        ) from None


def _local_name(prefix: str, published: str) -> str | None:
    """`prefix` + the last segment of `published`, lower case, other characters as '-'; None if that is no name."""
    short = re.sub(r"[^a-z0-9-]+", "-", published.rpartition("/")[2].lower()).strip("-")
    local = f"{prefix}{short}"
    return local if re.fullmatch(SERVER_NAME_PATTERN, local) else None


def _entry(name: str, registry: Followed, transport: str, url: str, servers: list[Published]) -> AnyUpstream:
    """A followed upstream: data like a registered entry (`registered_by`), so its addresses are checked on
    every connection; the registry's credential only on the registry's own origin."""
    if len(servers) == 1 and not servers[0].from_gateway:
        description = servers[0].description
    else:
        listed = ", ".join(server.name + ("" if server.enabled else " (disabled)") for server in servers)
        description = f"Followed from registry '{name}': {listed}"[:DESCRIPTION_LIMIT]
    spec: dict[str, Any] = {
        "transport": transport,
        "url": url,
        "enabled": any(server.enabled for server in servers),
        "description": description,
        "tags": tuple(dict.fromkeys(tag for server in servers for tag in server.tags)),
        "registered_by": f"registry:{name}",
        "on_change": registry.on_change,
        "timeout": registry.timeout,
        "auth": registry.auth if same_origin(url, registry.url) else None,
    }
    model = StreamableHttpUpstream if transport == "streamable-http" else SseUpstream
    return model.model_validate(spec)


def same_origin(url: str, other: str) -> bool:
    """Whether two URLs share scheme, host and port (the registry's credential goes only there)."""
    first, second = urlsplit(url), urlsplit(other)

    def origin(parts: Any) -> tuple[str, str, int]:
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)

    try:
        return origin(first) == origin(second)
    except ValueError:  # an invalid port
        return False
