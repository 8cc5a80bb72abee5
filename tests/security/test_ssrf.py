"""Class 4: a URL a caller registers reaches only the addresses the operator allows, checked on every connection.

Every spelling of a refused address is refused at registration; a name is resolved at connect time
and every address it gives is checked before anything is sent (the resolver, `resolve_host`, is the
seam: tests point names where they like). Allow-listed networks work; the gateway's own listeners
never do; the operator's own servers.yaml is trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError

from aggregator.config.settings import Settings
from aggregator.nginx.render import render
from aggregator.policy import addresses
from aggregator.policy.addresses import AddressPolicy, IPAddress, normalise, unwrap
from aggregator.registry.models import ServersFile
from aggregator.upstreams.state import UpstreamState
from aggregator.upstreams.upstream import Upstream
from examples.servers._http import http_app
from examples.servers.echo import create_server as create_echo
from tests.harness import ERAS, Era, LiveGateway, serve_asgi, serve_gateway, serve_upstream, unchanged
from tests.policies import admins_policy
from tests.security.recorder import recording_listener

pytestmark = pytest.mark.anyio
DEADLINE = 20.0

SCOPES = admins_policy()

# (host as a caller may spell it, the address it denotes)
SPELLINGS = [
    ("127.0.0.1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0x7F.0.0.1", "127.0.0.1"),
    ("127.255.255.254", "127.255.255.254"),
    ("[::1]", "::1"),
    ("[0:0:0:0:0:0:0:1]", "::1"),
    ("[::ffff:127.0.0.1]", "127.0.0.1"),
    ("[::ffff:7f00:1]", "127.0.0.1"),
    ("[::127.0.0.1]", "127.0.0.1"),
    ("[::ffff:0:7f00:1]", "127.0.0.1"),
    ("[2002:7f00:1::1]", "127.0.0.1"),
    ("localhost", "127.0.0.1"),
    ("LocalHost.", "127.0.0.1"),
    ("anything.localhost", "127.0.0.1"),
    ("ip6-localhost", "127.0.0.1"),
    ("169.254.169.254", "169.254.169.254"),
    ("2852039166", "169.254.169.254"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"),
    ("[::ffff:169.254.169.254]", "169.254.169.254"),
    ("[::ffff:a9fe:a9fe]", "169.254.169.254"),
    ("[64:ff9b::169.254.169.254]", "169.254.169.254"),
    ("[64:ff9b::a9fe:a9fe]", "169.254.169.254"),
    ("[fd00:ec2::254]", "fd00:ec2::254"),
    ("metadata.google.internal", "169.254.169.254"),
    ("metadata.google.internal.", "169.254.169.254"),
    ("169.254.1.1", "169.254.1.1"),
    ("[fe80::1]", "fe80::1"),
    ("[fe80::1%25eth0]", "fe80::1"),
    ("0.0.0.0", "0.0.0.0"),
    ("0", "0.0.0.0"),
    ("[::]", "::"),
    ("10.0.0.1", "10.0.0.1"),
    ("012.0.0.1", "10.0.0.1"),
    ("172.16.0.1", "172.16.0.1"),
    ("192.168.1.1", "192.168.1.1"),
    ("[::ffff:192.168.1.1]", "192.168.1.1"),
    ("100.64.0.1", "100.64.0.1"),
    ("[fc00::1]", "fc00::1"),
    ("[fec0::1]", "fec0::1"),
    ("224.0.0.1", "224.0.0.1"),
    ("[ff02::1]", "ff02::1"),
    ("255.255.255.255", "255.255.255.255"),
    ("240.0.0.1", "240.0.0.1"),
    ("198.18.0.1", "198.18.0.1"),
]


@pytest.mark.parametrize(("host", "address"), SPELLINGS)
def test_every_spelling_of_an_address_normalises_to_it(host: str, address: str) -> None:
    assert str(normalise(host)[0]) == address


@pytest.mark.parametrize(
    "host", ["8.8.8.8", "[2001:4860:4860::8888]", "[64:ff9b::8.8.8.8]", "[::ffff:8.8.8.8]", "example.com", "a.b-c.d"]
)
def test_public_addresses_and_names_pass_the_literal_check(host: str) -> None:
    AddressPolicy().check_literal(host, 443)


@dataclass(frozen=True)
class Gateways:
    strict: LiveGateway
    allowing: LiveGateway
    echo_url: str


@pytest.fixture(scope="module")
async def gateways(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateways]:
    async with (
        serve_upstream("echo") as echo_url,
        serve_gateway(tmp_path_factory.mktemp("strict"), servers={}, scopes=SCOPES) as strict,
        serve_gateway(
            tmp_path_factory.mktemp("allowing"),
            servers={},
            scopes=SCOPES,
            admin_allowed_networks=["127.0.0.0/8", "::1/128"],
            public_url="https://gateway.example.com",
            port=8765,
        ) as allowing,
    ):
        yield Gateways(strict, allowing, echo_url)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the test points where it likes: `resolver[name] = [addresses]` (the resolution seam)."""
    table: dict[str, list[str]] = {}
    real = addresses.resolve_host

    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host in table:
            return [ipaddress.ip_address(a) for a in table[host]]
        return await real(host, port)

    monkeypatch.setattr(addresses, "resolve_host", resolve)
    return table


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
    """(failed, text): a refusal may come as a tool error or as a JSON-RPC error."""
    try:
        result = await client.call_tool(tool, arguments)
    except MCPError as error:
        return True, error.message
    return bool(result.is_error), "".join(b.text for b in result.content if isinstance(b, types.TextContent))


async def settled(live: LiveGateway, name: str, condition: Callable[[Upstream], bool]) -> Upstream:
    """The upstream `name` once `condition` holds for it (within a deadline)."""
    try:
        with anyio.fail_after(DEADLINE):
            await live.gateway.pool.wait_until(lambda pool: condition(pool.get(name)))
    except TimeoutError:
        upstream = live.gateway.pool.get(name)
        raise AssertionError(f"{name}: still {upstream.state}, last error {upstream.last_error!r}") from None
    return live.gateway.pool.get(name)


def connected(upstream: Upstream) -> bool:
    return upstream.state in (UpstreamState.HEALTHY, UpstreamState.DEGRADED)


def refused(upstream: Upstream) -> bool:
    return upstream.state is UpstreamState.UNHEALTHY and "refused" in (upstream.last_error or "")


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("host", "address"), SPELLINGS)
async def test_a_refused_address_in_any_spelling_is_refused_at_registration(
    gateways: Gateways, host: str, address: str, era: Era
) -> None:
    live = gateways.strict
    with unchanged(live.servers_file):
        async with live.admin(era) as admin:
            failed, message = await call(
                admin, "register_service", {"service_name": "ssrf", "url": f"http://{host}/mcp"}
            )
        assert failed
        assert address in message and "refused" in message, message


URLS_REFUSED_EVEN_WHEN_ALLOWED = [
    ("http://127.0.0.1:8765/mcp", "own listener"),
    ("http://localhost:8765/mcp", "own listener"),
    ("http://[::1]:8765/mcp", "own listener"),
    ("https://gateway.example.com/mcp", "own listener"),
    ("https://GATEWAY.example.com./mcp", "own listener"),
    ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
    ("http://10.1.2.3/mcp", "private"),
    ("file:///etc/passwd", "not an http(s) URL"),
    ("gopher://127.0.0.1:70/", "not an http(s) URL"),
    ("http://user:pass@example.com/mcp", "credentials"),
    ("http://example.com@127.0.0.2:9/mcp", "credentials"),
    ("http://127.0.0.1:99999/mcp", "not a valid URL"),
    ("http://[::1/mcp", "not a valid URL"),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("url", "reason"), URLS_REFUSED_EVEN_WHEN_ALLOWED)
async def test_the_allow_list_opens_only_the_networks_it_names(
    gateways: Gateways, url: str, reason: str, era: Era
) -> None:
    async with gateways.allowing.admin(era) as admin:
        failed, message = await call(admin, "register_service", {"service_name": "loop", "url": url})
    assert failed and reason in message, message


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
@pytest.mark.parametrize("era", ERAS)
async def test_an_allow_listed_upstream_connects_and_serves(gateways: Gateways, transport: str, era: Era) -> None:
    live = gateways.allowing
    name = f"echo-{transport[:3]}-{era}"
    url = gateways.echo_url if transport == "streamable-http" else gateways.echo_url.removesuffix("/mcp") + "/sse"
    async with live.admin(era) as admin:
        failed, message = await call(
            admin, "register_service", {"service_name": name, "url": url, "transport": transport}
        )
        assert not failed, message
        await settled(live, name, lambda u: connected(u) or u.state is UpstreamState.UNHEALTHY)
        assert connected(live.gateway.pool.get(name)), live.gateway.pool.get(name).last_error
        answer = await admin.call_tool(f"{name}__echo", {"text": "through the allow-list"})
        assert answer.structured_content == {"result": "through the allow-list"}
        assert not (await call(admin, "remove_service", {"service_name": name}))[0]


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
@pytest.mark.parametrize(
    "answer",
    [
        ["127.0.0.1"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["169.254.169.254"],
        ["10.0.0.7"],
        ["8.8.8.8", "127.0.0.1"],  # one bad address refuses them all
        ["0.0.0.0"],
    ],
)
async def test_a_name_that_resolves_to_a_refused_address_is_never_connected_to(
    gateways: Gateways, resolver: dict[str, list[str]], answer: list[str], transport: str
) -> None:
    live = gateways.strict
    name = f"inside-{transport[:3]}-{len(answer)}-{answer[-1].replace(':', '-').replace('.', '-')}"[:32].rstrip("-")
    host = f"{name}.example.test"
    async with recording_listener() as recorder:
        resolver[host] = answer
        async with live.admin() as admin:
            url = f"http://{host}:{recorder.port}/mcp"
            failed, message = await call(
                admin, "register_service", {"service_name": name, "url": url, "transport": transport}
            )
            assert not failed, message  # a name is checked when it is resolved
            upstream = await settled(live, name, refused)
            services = (await admin.call_tool("list_services", {})).structured_content
            assert services is not None
            shown = next(s for s in services["services"] if s["name"] == name)["last_error"]
            assert not (await call(admin, "remove_service", {"service_name": name}))[0]
        assert recorder.connections == 0
    bad = next(a for a in answer if a != "8.8.8.8")
    assert f"{host} resolves to {unwrap(ipaddress.ip_address(bad))}" in (upstream.last_error or "")
    assert shown == upstream.last_error


async def test_a_name_that_rebinds_to_a_refused_address_is_refused_at_the_next_connection(
    gateways: Gateways, resolver: dict[str, list[str]]
) -> None:
    live = gateways.allowing
    resolver["rebind.example.test"] = ["127.0.0.1"]
    # An upstream that accepts any Host header (the demo's own rebinding protection would refuse the name).
    async with (
        serve_asgi(http_app(create_echo(), host="0.0.0.0")) as echo_url,
        live.admin() as admin,
    ):
        port = echo_url.split(":")[2].split("/")[0]
        url = f"http://rebind.example.test:{port}/mcp"
        assert not (await call(admin, "register_service", {"service_name": "rebind", "url": url}))[0]
        await settled(live, "rebind", connected)
        assert (await admin.call_tool("rebind__echo", {"text": "first"})).structured_content == {"result": "first"}

        resolver["rebind.example.test"] = ["169.254.169.254"]
        for enabled in (False, True):  # a new connection
            assert not (await call(admin, "toggle_service", {"service_name": "rebind", "enabled": enabled}))[0]
        upstream = await settled(live, "rebind", refused)
        assert "rebind.example.test resolves to 169.254.169.254" in (upstream.last_error or "")
        assert "rebind__echo" not in {t.name for t in (await admin.list_tools()).tools}
        assert not (await call(admin, "remove_service", {"service_name": "rebind"}))[0]


@pytest.mark.parametrize("answer", [["127.0.0.1"], ["::1"], ["127.0.0.9"]])
async def test_a_name_for_the_gateways_own_listener_is_refused_even_in_an_allowed_network(
    gateways: Gateways, resolver: dict[str, list[str]], answer: list[str]
) -> None:
    live = gateways.allowing  # allows 127.0.0.0/8 and ::1; listens (by its settings) on port 8765
    resolver["itself.example.test"] = answer
    name = f"itself-{answer[0].replace(':', '').replace('.', '-')}"
    async with live.admin() as admin:
        url = "http://itself.example.test:8765/mcp"
        assert not (await call(admin, "register_service", {"service_name": name, "url": url}))[0]
        upstream = await settled(live, name, refused)
        assert not (await call(admin, "remove_service", {"service_name": name}))[0]
    assert "port 8765 is this gateway's own listener" in (upstream.last_error or "")


async def test_the_upstream_sees_the_name_it_was_registered_with(
    gateways: Gateways, resolver: dict[str, list[str]]
) -> None:
    live = gateways.allowing
    async with recording_listener() as recorder:
        resolver["named.example.test"] = ["127.0.0.1"]
        async with live.admin() as admin:
            url = f"http://named.example.test:{recorder.port}/mcp"
            assert not (await call(admin, "register_service", {"service_name": "named", "url": url}))[0]
            await recorder.wait_for(lambda r: bool(r.received))
            assert not (await call(admin, "remove_service", {"service_name": "named"}))[0]
    assert f"host: named.example.test:{recorder.port}".encode() in recorder.received[0].lower()


async def test_the_operators_own_servers_are_trusted(tmp_path_factory: pytest.TempPathFactory) -> None:
    async with (
        serve_upstream("echo") as echo_url,
        serve_gateway(
            tmp_path_factory.mktemp("operator"),
            servers={"echo": {"transport": "streamable-http", "url": echo_url}},
            scopes=SCOPES,
        ) as live,
        live.admin() as client,
    ):
        assert (await client.call_tool("echo__echo", {"text": "ok"})).structured_content == {"result": "ok"}


def test_the_policy_comes_from_settings() -> None:
    settings = Settings.model_validate(
        {"port": 9000, "admin_allowed_networks": ["10.20.0.0/16"], "public_url": "https://gw.example.org:8443/"}
    )
    policy = AddressPolicy.from_settings(settings)
    policy.check("x", ipaddress.ip_address("10.20.1.2"), 80)
    for host, port in [("10.21.0.1", 80), ("127.0.0.1", 9000), ("gw.example.org", 8443)]:
        with pytest.raises(Exception, match="refused"):
            policy.check_literal(host, port)


NGINX_CASES = [
    ({"url": "http://127.0.0.1:9001/mcp"}, None),
    ({"url": "http://[::1]:9001/mcp"}, None),
    ({"url": "http://127.0.0.1:9001/mcp", "registered_by": "alice"}, None),
    ({"url": "http://localhost:9001/mcp", "registered_by": "alice"}, "host name"),
    ({"url": "http://rebind.example.test:9001/mcp", "registered_by": "alice"}, "host name"),
    ({"url": "http://2130706433:9001/mcp", "registered_by": "alice"}, "host name"),
    ({"url": "http://10.0.0.1:9001/mcp", "registered_by": "alice"}, "private"),
    ({"url": "http://169.254.169.254/mcp", "registered_by": "alice"}, "cloud metadata"),
    ({"url": "http://127.0.0.1:8765/mcp", "registered_by": "alice"}, "own listener"),
    ({"url": "http://127.0.0.1:9001/x;return%20200/mcp", "registered_by": "alice"}, "syntax"),
    ({"url": "http://127.0.0.1:9001/$host/mcp", "registered_by": "alice"}, "syntax"),
    ({"url": "http://127.0.0.1:9001/a'b/mcp", "registered_by": "alice"}, "syntax"),
]


@pytest.mark.parametrize(("entry", "reason"), NGINX_CASES, ids=[e["url"] for e, _ in NGINX_CASES])
def test_nginx_passes_a_registered_url_through_only_where_the_gateway_would_connect(
    entry: dict[str, Any], reason: str | None
) -> None:
    settings = Settings.model_validate({"port": 8765, "admin_allowed_networks": ["127.0.0.0/8", "::1/128"]})
    servers = ServersFile.model_validate({"servers": {"up": {"transport": "streamable-http", **entry}}})
    rendered = render(settings, servers)
    if reason is None:
        assert rendered.passthrough == ("up",)
    else:
        assert rendered.passthrough == () and reason in rendered.skipped["up"], rendered.skipped
