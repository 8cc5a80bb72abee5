"""A registry's answer is data: a malformed or hostile one is refused and the last good list keeps serving.

The registry is a small app on loopback whose answer each test sets; the server it publishes is the
real demo weather upstream. After a good refresh, each bad answer is refused with a reason naming
the culprit, the followed upstream stays connected, and health shows the registry as stale.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aggregator.policy import addresses
from aggregator.registry.federation import Federation
from tests.federation.conftest import DEADLINE, FakeRegistry, offers, published, serve_follower
from tests.harness import ADMIN, LiveGateway, call_structured, free_port, serve_asgi, tool_names, unchanged
from tests.policies import admins_policy

pytestmark = pytest.mark.anyio


@dataclass
class Followed:
    registry: FakeRegistry
    follower: LiveGateway
    url: str

    @property
    def federation(self) -> Federation:
        assert self.follower.gateway.federation is not None
        return self.follower.gateway.federation


GOOD_LIST = {
    "servers": [
        published("io.github.acme/weather", "{weather}"),
        published(
            "io.github.acme/local-tool",
            packages=[{"registryType": "pypi", "identifier": "acme-local-tool", "version": "2.0.0"}],
        ),
    ],
    "metadata": {"count": 2},
}


def _good(weather_url: str) -> Any:
    return json.loads(json.dumps(GOOD_LIST).replace("{weather}", weather_url))


@pytest.fixture(scope="module")
async def following(tmp_path_factory: pytest.TempPathFactory, weather_url: str) -> AsyncIterator[Followed]:
    """A follower of a registry that publishes `weather` (a remote) and `local-tool` (a package only)."""
    registry = FakeRegistry()
    async with serve_asgi(registry.app(), path="/v0.1/servers") as url:
        registries = {"acme": {"url": url, "on_change": "accept", "max_servers": 5, "refresh": 3600}}
        directory = tmp_path_factory.mktemp("follower")
        async with serve_follower(directory, registries=registries, scopes=admins_policy()) as follower:
            yield Followed(registry, follower, url)


@pytest.fixture
async def followed(following: Followed, weather_url: str) -> Followed:
    """The follower, once it has read the good answer again (each test starts from a last good list)."""
    following.registry.status = 200
    following.registry.body = _good(weather_url)
    [status] = await following.federation.refresh()
    assert status.state == "ok", status.last_error
    await following.follower.wait_until(offers("weather", "get_forecast"), DEADLINE)
    return following


def _many(count: int, url: str) -> dict[str, Any]:
    return {"servers": [published(f"io.github.acme/s{i}", url) for i in range(count)]}


HOSTILE: dict[str, tuple[Any, str]] = {
    "not JSON": (b"<html>Service moved</html>", "not JSON"),
    "wrong schema": ({"servers": "everything"}, "servers: Input should be a valid list"),
    "a server without a name": ({"servers": [{"server": {"description": "x"}}]}, "servers.0.server.name"),
    "a name that is not reverse-DNS": (
        {"servers": [published("weather", "http://8.8.8.8/mcp")]},
        "servers.0.server.name",
    ),
    "a link-local URL": (
        {"servers": [published("io.github.acme/weather", "http://169.254.10.1/mcp")]},
        "169.254.10.1 is a link-local address",
    ),
    "the metadata service": (
        {"servers": [published("io.github.acme/meta", "http://[::ffff:169.254.169.254]/latest")]},
        "cloud metadata",
    ),
    "a URL with credentials": (
        {"servers": [published("io.github.acme/weather", "http://user:secret@8.8.8.8/mcp")]},
        "carries credentials",
    ),
    "duplicate names": (
        {
            "servers": [
                published("io.github.acme/x", "http://8.8.8.8/a"),
                published("io.github.acme/x", "http://8.8.4.4/b"),
            ]
        },
        "publishes 'io.github.acme/x' twice",
    ),
    "two servers that map to one name": (
        {"servers": [published("io.github.a/x", "http://8.8.8.8/a"), published("io.github.b/x", "http://8.8.4.4/b")]},
        "two servers named 'x'",
    ),
    "a huge list": (_many(6, "http://8.8.8.8/mcp"), "more than 5 servers"),
    "a page over 4 MiB": (b'{"servers": [], "pad": "' + b"x" * (4 * 1024 * 1024 + 10) + b'"}', "longer than"),
    "a cursor that repeats": ({"servers": [], "metadata": {"nextCursor": "again"}}, "repeats the page cursor"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_a_bad_answer_is_refused_and_the_last_good_list_stays(followed: Followed, case: str) -> None:
    body, reason = HOSTILE[case]
    followed.registry.body = body
    with unchanged(followed.follower.servers_file):
        [status] = await followed.federation.refresh()
    assert status.state == "stale"
    assert status.last_error is not None and reason in status.last_error, status.last_error
    assert "acme" in status.last_error  # names the registry
    assert set(status.following.upstreams) == {"weather"}
    assert {upstream.name for upstream in followed.follower.gateway.pool} == {"weather"}
    await followed.follower.wait_until(offers("weather", "get_forecast"), DEADLINE)


async def test_a_registry_that_is_down_keeps_its_last_list_and_shows_in_health(followed: Followed) -> None:
    followed.registry.status = 503
    [status] = await followed.federation.refresh()
    assert status.state == "stale" and status.last_error is not None
    assert "answered HTTP 503" in status.last_error
    async with followed.follower.admin() as admin:
        health = await call_structured(admin, "healthcheck", {})
    [registry] = health["registries"]
    assert registry["state"] == "stale" and "503" in registry["last_error"]
    assert [s["name"] for s in health["services"]] == ["weather"]

    followed.registry.status = 200
    [status] = await followed.federation.refresh()
    assert status.state == "ok" and status.last_error is None


async def test_a_registry_that_cannot_be_reached_keeps_its_last_list(tmp_path: Path, weather_url: str) -> None:
    registry = FakeRegistry()
    registry.body = {"servers": [published("io.github.acme/weather", weather_url)]}
    port = free_port()
    url = f"http://127.0.0.1:{port}/v0.1/servers"
    registries = {"acme": {"url": url, "on_change": "accept", "refresh": 3600}}
    async with serve_follower(tmp_path / "follower", registries=registries, scopes=admins_policy()) as follower:
        federation = follower.gateway.federation
        assert federation is not None
        async with serve_asgi(registry.app(), path="/v0.1/servers", port=port):
            [status] = await federation.refresh()
            assert status.state == "ok", status.last_error
        [status] = await federation.refresh()
        assert status.state == "stale"
        assert status.last_error == f"Registry 'acme' at {url} cannot be reached: ConnectError."
        await follower.wait_until(offers("weather", "get_forecast"), DEADLINE)


async def test_package_only_servers_are_listed_as_available_and_never_run(followed: Followed) -> None:
    async with followed.follower.client("root", groups=["admins"], path=ADMIN) as admin:
        services = await call_structured(admin, "list_services", {})
    assert services["available"] == [
        {
            "name": "local-tool",
            "state": "available",
            "registry": "acme",
            "published_as": "io.github.acme/local-tool",
            "version": "1.0.0",
            "description": "io.github.acme/local-tool server",
            "packages": [{"registryType": "pypi", "identifier": "acme-local-tool", "version": "2.0.0"}],
        }
    ]
    assert "local-tool" not in {upstream.name for upstream in followed.follower.gateway.pool}


async def test_a_followed_name_that_resolves_to_a_link_local_address_is_refused_at_connect_time(
    followed: Followed, weather_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name passes the early check (it needs DNS); every connection resolves it and checks what it gets."""
    real = addresses.resolve_host

    async def resolve(host: str, port: int) -> list[addresses.IPAddress]:
        if host == "weather.acme.test":
            return [ipaddress.ip_address("169.254.7.7")]
        return await real(host, port)

    monkeypatch.setattr(addresses, "resolve_host", resolve)
    port = weather_url.split(":")[2].split("/")[0]
    body = _good(weather_url)
    body["servers"].append(published("io.github.acme/sneaky", f"http://weather.acme.test:{port}/mcp"))
    followed.registry.body = body
    [status] = await followed.federation.refresh()
    assert status.state == "ok" and "sneaky" in status.following.upstreams

    def refused(pool: Any) -> bool:
        sneaky = next((u for u in pool if u.name == "sneaky"), None)
        return sneaky is not None and "169.254.7.7, a link-local address" in (sneaky.last_error or "")

    await followed.follower.wait_until(refused, DEADLINE)
    async with followed.follower.admin() as admin:
        names = await tool_names(admin)
    assert not {name for name in names if name.startswith("sneaky__")}
