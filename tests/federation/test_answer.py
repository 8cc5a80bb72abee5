"""What a gateway takes from a registry's answer: filters, the prefix rule, shared endpoints, credentials, merging."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from aggregator.policy.addresses import AddressPolicy
from aggregator.registry.federation_answer import Followed, RegistryAnswerError, parse_page
from aggregator.registry.federation_merge import merge
from aggregator.registry.federation_select import Following, select
from aggregator.registry.models import BearerAuthSettings, ServersFile, StreamableHttpUpstream
from aggregator.tools.checks import check_url
from tests.federation.conftest import published

REGISTRY_URL = "https://registry.example.com/v0.1/servers"
CHECK = AddressPolicy()


def _check(url: str) -> None:
    check_url(url, CHECK)


def _registry(**settings: Any) -> Followed:
    return Followed.model_validate({"url": REGISTRY_URL, **settings})


def _select(servers: list[dict[str, Any]], **settings: Any) -> Following:
    page = parse_page("central", json.dumps({"servers": servers}).encode())
    return select("central", _registry(**settings), page.servers, _check)


def _tagged(name: str, url: str, *tags: str) -> dict[str, Any]:
    entry = published(name, url)
    entry["_meta"]["io.github.mcp-aggregator/gateway"] = {"tags": list(tags), "enabled": True}
    return entry


def test_include_and_exclude_filter_by_name_tag_and_namespace() -> None:
    servers = [
        published("io.github.acme/weather", "https://weather.example.com/mcp"),
        published("io.github.acme/legacy-search", "https://search.example.com/mcp"),
        published("com.other/maps", "https://maps.example.com/mcp"),
    ]
    following = _select(servers, include={"namespaces": ["io.github.acme"]}, exclude={"names": ["legacy-*"]})
    assert list(following.upstreams) == ["weather"]
    assert list(_select(servers, include={"names": ["com.other/*"]}).upstreams) == ["maps"]


def test_the_prefix_rule_names_followed_servers_and_a_name_that_cannot_be_made_is_skipped() -> None:
    servers = [
        published("io.github.acme/Weather_API", "https://weather.example.com/mcp"),
        published("io.github.acme/" + "x" * 40, "https://long.example.com/mcp"),
    ]
    following = _select(servers, prefix="central-")
    assert list(following.upstreams) == ["central-weather-api"]
    assert following.skipped == (f"'io.github.acme/{'x' * 40}' gives no valid server name with prefix 'central-'.",)


def test_another_gateways_endpoint_is_one_upstream_named_after_the_registry() -> None:
    gateway = "https://central.example.com/mcp"
    following = _select(
        [_tagged("io.github.mcp-aggregator/weather", gateway), _tagged("io.github.mcp-aggregator/echo", gateway)]
    )
    assert list(following.upstreams) == ["central"]
    assert following.members["central"] == ("io.github.mcp-aggregator/weather", "io.github.mcp-aggregator/echo")


def test_a_filter_that_cannot_hide_a_server_of_a_shared_endpoint_says_so() -> None:
    gateway = "https://central.example.com/mcp"
    servers = [_tagged("io.github.mcp-aggregator/weather", gateway), _tagged("io.github.mcp-aggregator/echo", gateway)]
    following = _select(servers, exclude={"names": ["echo"]})
    assert following.members == {"central": ("io.github.mcp-aggregator/weather",)}
    assert following.skipped == (
        "'io.github.mcp-aggregator/echo' is filtered out, but its endpoint is followed as 'central': its tools stay "
        "reachable there unless this gateway's scopes.yml denies them.",
    )


def test_followed_entries_are_data_checked_on_every_connection_and_held_by_default() -> None:
    [spec] = _select([published("io.github.acme/weather", "https://weather.example.com/mcp")]).upstreams.values()
    assert isinstance(spec, StreamableHttpUpstream)
    assert spec.registered_by == "registry:central"  # the transports check its addresses on every connection
    assert spec.on_change == "hold"


def test_the_registrys_credential_goes_only_to_its_own_origin() -> None:
    auth = BearerAuthSettings(type="bearer", token=SecretStr("registry-token"))
    servers = [
        published("io.github.acme/here", "https://registry.example.com/mcp/here"),
        published("io.github.acme/there", "https://elsewhere.example.com/mcp"),
        published("io.github.acme/other-port", "https://registry.example.com:8443/mcp"),
    ]
    following = _select(servers, auth=auth)
    credentials = {name: getattr(spec, "auth", None) for name, spec in following.upstreams.items()}
    assert credentials == {"here": auth, "there": None, "other-port": None}


def test_deleted_old_templated_and_empty_entries_are_not_followed() -> None:
    deleted = published("io.github.acme/gone", "https://gone.example.com/mcp")
    deleted["_meta"]["io.modelcontextprotocol.registry/official"]["status"] = "deleted"
    older = published("io.github.acme/older", "https://older.example.com/mcp")
    older["_meta"]["io.modelcontextprotocol.registry/official"]["isLatest"] = False
    templated = published("io.github.acme/tenant", "https://{tenant}.example.com/mcp")
    empty = published("io.github.acme/empty")
    following = _select([deleted, older, templated, empty])
    assert not following.upstreams and not following.available
    assert following.skipped == (
        "'io.github.acme/tenant': its remote URL has variables this gateway cannot fill.",
        "'io.github.acme/empty' publishes neither a streamable-http or sse remote nor a package.",
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.5/mcp", "10.0.0.5 is a private address"),
        ("http://[fe80::1]/mcp", "fe80::1 is a link-local address"),
        ("http://0x7f000001/mcp", "is 127.0.0.1, a loopback address"),
        ("file:///etc/passwd", "is not an http(s) URL"),
    ],
)
def test_one_url_registration_refuses_refuses_the_whole_answer(url: str, reason: str) -> None:
    servers = [published("io.github.acme/good", "https://good.example.com/mcp"), published("io.github.acme/bad", url)]
    with pytest.raises(
        RegistryAnswerError, match=r"publishes 'io\.github\.acme/bad' at a URL registration refuses"
    ) as caught:
        _select(servers)
    assert reason in str(caught.value)


def test_servers_yaml_wins_every_name_and_prefix_and_the_conflict_is_reported() -> None:
    local = ServersFile.model_validate(
        {
            "servers": {
                "weather": {"transport": "streamable-http", "url": "https://mine.example.com/mcp"},
                "maps-local": {"transport": "streamable-http", "url": "https://maps.example.com/mcp", "prefix": "maps"},
            },
            "registries": {"central": {"url": REGISTRY_URL}},
        }
    )
    following = _select(
        [
            published("io.github.acme/weather", "https://theirs.example.com/mcp"),
            published("io.github.acme/maps", "https://their-maps.example.com/mcp"),
            published("io.github.acme/echo", "https://echo.example.com/mcp"),
        ]
    )
    merged = merge(local, {"central": following, "removed-from-servers-yaml": following})
    assert set(merged.servers.servers) == {"weather", "maps-local", "echo"}
    assert getattr(merged.servers.servers["weather"], "url", None) == "https://mine.example.com/mcp"
    assert merged.conflicts == {
        "central": (
            "'maps' is left out: server 'maps-local' exports under 'maps'.",
            "'weather' is left out: servers.yaml already has a server of that name.",
        )
    }
