"""A followed registry's answer: the official `/v0.1` server list, validated.

A registry's answer is someone else's data. `parse_page` refuses a page that is not a server list
(the JSON path and the reason in the message); what this gateway takes from the servers it lists
is `aggregator.registry.federation_select`. A refused answer never replaces the last good one
(`aggregator.registry.federation`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aggregator.errors import GatewayError
from aggregator.registry.federation_settings import FollowedRegistry
from aggregator.registry.models import UpstreamAuthSettings

Followed = FollowedRegistry[UpstreamAuthSettings]
"""One `registries:` entry of servers.yaml, with the HTTP upstreams' credential union."""
CheckUrl = Callable[[str], None]
"""Raises `AccessDeniedError` for a URL registration may not use (`aggregator.tools.checks.check_url`)."""

AGGREGATOR_META = "io.github.mcp-aggregator/gateway"
OFFICIAL_META = "io.modelcontextprotocol.registry/official"
DESCRIPTION_LIMIT = 2000


class RegistryError(GatewayError):
    """A followed registry could not be used this time; the last good list stays (subclasses say why).

    Defined here rather than in `aggregator.errors`, which this task does not own.
    """


class RegistryUnreachableError(RegistryError):
    """Raised when a registry cannot be reached or answers with an HTTP error."""


class RegistryAnswerError(RegistryError):
    """Raised when a registry's answer is refused: not a server list, too long, a duplicate name, a bad URL."""


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # the official format grows; unknown keys are ignored


class Remote(_Answer):
    type: str = Field(max_length=64)
    url: str = Field(min_length=1, max_length=2048)


class Package(_Answer):
    registryType: str | None = Field(default=None, max_length=64)  # the official format's key
    identifier: str = Field(min_length=1, max_length=300)
    version: str | None = Field(default=None, max_length=100)


class _ServerJson(_Answer):
    name: str = Field(pattern=r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$", max_length=200)
    description: str = Field(default="", max_length=DESCRIPTION_LIMIT)
    version: str = Field(default="", max_length=100)
    remotes: tuple[Remote, ...] = Field(default=(), max_length=16)
    packages: tuple[Package, ...] = Field(default=(), max_length=32)


class _GatewayMeta(_Answer):
    enabled: bool = True
    tags: tuple[str, ...] = Field(default=(), max_length=32)


class _OfficialMeta(_Answer):
    status: str = Field(default="active", max_length=32)
    isLatest: bool = True  # the official format's key


class _Meta(_Answer):
    official: _OfficialMeta = Field(default_factory=_OfficialMeta, alias="io.modelcontextprotocol.registry/official")
    gateway: _GatewayMeta | None = Field(default=None, alias="io.github.mcp-aggregator/gateway")


class _ServerResponse(_Answer):
    server: _ServerJson
    meta: _Meta = Field(default_factory=_Meta, alias="_meta")


class _Metadata(_Answer):
    nextCursor: str | None = Field(default=None, max_length=500)  # the official format's key


class _ServerList(_Answer):
    servers: list[_ServerResponse] = Field(max_length=10000)
    metadata: _Metadata = Field(default_factory=_Metadata)


@dataclass(frozen=True, slots=True)
class Published:
    """One server as a registry publishes it (its latest version)."""

    name: str
    description: str
    version: str
    remotes: tuple[Remote, ...]
    packages: tuple[Package, ...]
    tags: tuple[str, ...]
    enabled: bool
    from_gateway: bool
    """Published by another mcp-aggregator: its remote is that gateway's aggregated endpoint."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a registry's list: its servers (deleted and older versions left out) and the next cursor."""

    servers: tuple[Published, ...]
    next_cursor: str | None


def parse_page(registry: str, body: bytes) -> Page:
    """The servers of one page of registry `registry`'s answer; `RegistryAnswerError` naming what is wrong."""
    try:
        answer = _ServerList.model_validate(json.loads(body))
    except json.JSONDecodeError as error:
        raise RegistryAnswerError(f"Registry '{registry}' answered with something that is not JSON: {error}.") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the answer"
        raise RegistryAnswerError(
            f"Registry '{registry}' answered with something that is not a server list: {where}: {first['msg']} "
            f"({error.error_count()} problem{'s' if error.error_count() > 1 else ''})."
        ) from None
    servers = tuple(
        Published(
            name=item.server.name,
            description=" ".join(item.server.description.split()),
            version=item.server.version,
            remotes=item.server.remotes,
            packages=item.server.packages,
            tags=item.meta.gateway.tags if item.meta.gateway else (),
            enabled=item.meta.gateway.enabled if item.meta.gateway else True,
            from_gateway=item.meta.gateway is not None,
        )
        for item in answer.servers
        if item.meta.official.status != "deleted" and item.meta.official.isLatest
    )
    return Page(servers, answer.metadata.nextCursor or None)
