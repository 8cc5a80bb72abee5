"""The catalog: exported names, resolution through the map, collisions and suggestions."""

from __future__ import annotations

import mcp_types as types
import pytest

from aggregator.catalog.catalog import Catalog
from aggregator.errors import UnknownNameError
from aggregator.registry.models import ServersFile
from aggregator.upstreams.listing import Listing
from aggregator.upstreams.state import Timings
from aggregator.upstreams.upstream import Upstream

TIMINGS = Timings(connect_timeout=1, health_interval=1, backoff_initial=1, backoff_max=1)


def catalog_of(config: dict[str, dict[str, object]], tools: dict[str, list[str]]) -> Catalog:
    servers = ServersFile.model_validate({"servers": config})
    upstreams = []
    for name, spec in servers.servers.items():
        upstream = Upstream(name, spec, TIMINGS, on_change=lambda _: None)
        upstream.listing = Listing(
            tools=tuple(types.Tool(name=t, input_schema={"type": "object"}) for t in tools.get(name, []))
        )
        upstreams.append(upstream)
    catalog = Catalog()
    catalog.rebuild(upstreams)
    return catalog


def stdio(**extra: object) -> dict[str, object]:
    return {"transport": "stdio", "command": "x", **extra}


def test_names_are_prefixed_and_resolve_to_the_original() -> None:
    catalog = catalog_of({"weather": stdio(), "gh": stdio(prefix="")}, {"weather": ["get__forecast"], "gh": ["issues"]})
    assert [entry.item.name for entry in catalog.tools()] == ["weather__get__forecast", "issues"]
    entry = catalog.resolve_tool("weather__get__forecast")
    assert (entry.upstream, entry.original_name) == ("weather", "get__forecast")
    assert catalog.resolve_tool("issues").upstream == "gh"


def test_a_custom_prefix_keeps_names_short() -> None:
    catalog = catalog_of({"very-long-server-name": stdio(prefix="v")}, {"very-long-server-name": ["run"]})
    assert catalog.resolve_tool("v__run").upstream == "very-long-server-name"


def test_a_collision_between_unprefixed_servers_keeps_the_first_registered() -> None:
    catalog = catalog_of({"a": stdio(prefix=""), "b": stdio(prefix="")}, {"a": ["search"], "b": ["search", "other"]})
    assert [entry.item.name for entry in catalog.tools()] == ["search", "other"]
    assert catalog.resolve_tool("search").upstream == "a"


def test_unknown_names_come_with_close_suggestions() -> None:
    catalog = catalog_of({"weather": stdio()}, {"weather": ["get_forecast", "get_alerts"]})
    with pytest.raises(
        UnknownNameError, match=r"Unknown tool 'weather__get_forcast'\. Did you mean 'weather__get_forecast'"
    ):
        catalog.resolve_tool("weather__get_forcast")
    with pytest.raises(UnknownNameError) as caught:
        catalog.resolve_tool("zzz")
    assert str(caught.value) == "Unknown tool 'zzz'."


def test_the_version_changes_only_when_the_listing_does() -> None:
    servers = ServersFile.model_validate({"servers": {"a": stdio()}})
    upstream = Upstream("a", servers.servers["a"], TIMINGS, on_change=lambda _: None)
    catalog = Catalog()
    upstream.listing = Listing(tools=(types.Tool(name="t", input_schema={"type": "object"}),))
    catalog.rebuild([upstream])
    first = catalog.version
    catalog.rebuild([upstream])
    assert catalog.version == first
    upstream.listing = Listing(tools=(types.Tool(name="t", description="new", input_schema={"type": "object"}),))
    catalog.rebuild([upstream])
    assert catalog.version == first + 1
