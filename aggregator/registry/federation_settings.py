"""servers.yaml `registries:`: the official-format registries (`/v0.1`) whose published servers this gateway follows.

    registries:
      central:
        url: https://registry.example.com/v0.1/servers
        auth: {type: bearer, token_env: CENTRAL_TOKEN}
        include: {namespaces: [io.github.mcp-aggregator]}
        exclude: {names: [legacy-*], tags: [experimental]}
        prefix: central-
        refresh: 300

The model is generic over the credential so that `aggregator.registry.models` can give it the same
`auth` union as HTTP upstreams without this module importing that one back.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

AuthT = TypeVar("AuthT")
Pattern = Annotated[str, Field(min_length=1, max_length=200)]
PREFIX_PATTERN = r"^$|^[a-z0-9][a-z0-9-]{0,15}$"


class ServerFilter(BaseModel):
    """Which published servers a filter matches: any one of its names, tags or namespaces (shell-style globs).

    A name matches the server's full registry name (`io.github.acme/weather`) or its last segment
    (`weather`); a namespace is the part before the '/' (`io.github.acme`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    names: tuple[Pattern, ...] = ()
    tags: tuple[Pattern, ...] = ()
    namespaces: tuple[Pattern, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether the filter names nothing (an empty include matches every server)."""
        return not (self.names or self.tags or self.namespaces)

    def matches(self, name: str, tags: tuple[str, ...]) -> bool:
        """Whether the published server `name` with `tags` matches one of the patterns."""
        namespace, _, short = name.rpartition("/")
        return (
            any(fnmatchcase(name, p) or fnmatchcase(short, p) for p in self.names)
            or any(fnmatchcase(tag, p) for tag in tags for p in self.tags)
            or any(fnmatchcase(namespace, p) for p in self.namespaces)
        )


class FollowedRegistry(BaseModel, Generic[AuthT]):
    """One registry this gateway follows: where it is, how to authenticate, what to take from it, how often."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="The registry's server list, e.g. https://host/v0.1/servers (another gateway's too).")
    auth: AuthT | None = Field(
        default=None,
        description="The gateway's own credential for the registry, as for HTTP upstreams. It is also sent to the "
        "remotes the registry publishes on its own origin (scheme, host and port), never to another origin.",
    )
    include: ServerFilter = Field(default_factory=ServerFilter, description="Only matching servers (default: all).")
    exclude: ServerFilter = Field(default_factory=ServerFilter, description="Never matching servers (wins).")
    prefix: Annotated[str, Field(pattern=PREFIX_PATTERN)] = Field(
        default="", description="Put before each followed server's name: prefix 'central-' makes 'central-weather'."
    )
    refresh: float = Field(default=300.0, ge=1.0, le=86400.0, description="Seconds between two reads of the list.")
    timeout: float = Field(default=30.0, gt=0, le=600, description="Seconds one read of the registry may take.")
    max_servers: int = Field(default=500, ge=1, le=10000, description="A longer list is refused as a whole.")
    on_change: Literal["hold", "warn", "accept"] = Field(
        default="hold", description="For followed servers' tools: as an upstream's on_change (default: hold)."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("http", "https") or not rest or rest[0] in "/?#" or any(c.isspace() for c in url):
            raise ValueError(f"'{url}' is not an http(s) URL")
        return url

    def wanted(self, name: str, tags: tuple[str, ...]) -> bool:
        """Whether the filters take the published server `name`."""
        included = self.include.empty or self.include.matches(name, tags)
        return included and not self.exclude.matches(name, tags)
