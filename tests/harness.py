"""In-process gateways and upstreams on loopback ports, and MCP clients for any principal.

Tests that are not about processes use these instead of subprocesses: the gateway is built and
served in the test's own event loop (real uvicorn, real sockets, real MCP clients), so a test
starts in milliseconds and can reach the live parts (`LiveGateway.gateway`) and what the gateway
logged (`LiveGateway.log`).

    async with serve_gateway(tmp_path, servers={...}, scopes=SCOPES) as live:
        async with live.client("alice", groups=["users"], era="legacy") as client:
            ...
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import mcp_types as types
import uvicorn
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr
from starlette.types import ASGIApp

from aggregator.config.settings import AuthSettings, GatewayKeySettings, load_settings
from aggregator.http.app import create_app
from aggregator.policy.vending import mint_token
from aggregator.registry.models import load_servers
from aggregator.server.gateway import Gateway, build_gateway
from aggregator.tracing import Tracing
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.state import UpstreamState
from examples.servers._http import http_app
from tests.logs import LogLines, captured_logs
from tests.processes import free_port as free_port  # where tests have always found it

SECRET = "tests-only-signing-secret-0123456789abcdef"
"""The HS256 secret of every test gateway (`AUTH`); tokens from `token_for` verify against it."""
KID = "tests"
AUTH = AuthSettings(gateway_keys=(GatewayKeySettings(kid=KID, secret=SecretStr(SECRET)),))
STARTUP_DEADLINE = 60.0
ADMIN = "/mcp/admin"
"""The path of the management endpoint: `live.client(..., path=ADMIN)`, `live.member(..., path=ADMIN)`."""
LIVE_STATES = frozenset({UpstreamState.HEALTHY, UpstreamState.DEGRADED})

Era = Literal["auto", "legacy"]
"""`auto` reaches 2026-07-28 where the server speaks it; `legacy` is the 2025-11-25 handshake."""
ERAS: tuple[Era, ...] = ("legacy", "auto")
PoolCondition = Callable[[UpstreamPool], bool]


def token_for(
    sub: str, *, groups: Sequence[str] = (), scopes: Sequence[str] = (), ttl: int = 6 * 3600, auth: AuthSettings = AUTH
) -> str:
    """A gateway token for `sub`, signed with the test secret. Modules mint theirs at import, so the
    default lifetime outlasts the slowest whole run (a 600 s one expired in a 50-minute run)."""
    return mint_token(auth, sub, list(scopes), ttl, groups=list(groups))[0]


def member_token(groups: Sequence[str]) -> str:
    """A token for a member of `groups`, named after them: `user-admins`, `user-a-b`, `user-none`."""
    return token_for(f"user-{'-'.join(groups) or 'none'}", groups=groups)


def text_of(result: types.CallToolResult) -> str:
    """The text blocks of a tool result, joined."""
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def tool_names(client: Client) -> set[str]:
    """The names of the tools `client` is shown."""
    return {tool.name for tool in (await client.list_tools()).tools}


async def call_structured(client: Client, tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Call `tool`, which must succeed; its structured answer."""
    result = await client.call_tool(tool, dict(arguments))
    assert not result.is_error, result.content
    structured: dict[str, Any] | None = result.structured_content
    assert structured is not None, result.content
    return structured


@asynccontextmanager
async def serve_asgi(app: ASGIApp, *, path: str = "/mcp", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a loopback port (a free one by default) until the block ends;
    yield `http://127.0.0.1:PORT{path}`.

    The listening socket exists before the server starts, so a client may connect at once: the
    kernel queues the connection until uvicorn accepts it. uvicorn's own loggers propagate (no
    logging config of its own), so its errors reach `captured_logs`.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(512)
    bound = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="h11",
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = _QuietServer(config)
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve, [listener])
        try:
            yield f"http://127.0.0.1:{bound}{path}"
        finally:
            server.should_exit = True
    listener.close()


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: the test runner owns them."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve_mcp(server: MCPServer[Any], *, port: int = 0) -> AsyncIterator[str]:
    """Serve an `MCPServer` in-process at /mcp (streamable HTTP) and /sse (legacy); yield its /mcp URL."""
    async with serve_asgi(http_app(server, host="127.0.0.1"), port=port) as url:
        yield url


@asynccontextmanager
async def serve_upstream(module: str, *, port: int = 0) -> AsyncIterator[str]:
    """Serve the demo upstream `examples.servers.<module>` in-process; yield its /mcp URL (also /sse)."""
    create_server = importlib.import_module(f"examples.servers.{module}").create_server
    async with serve_mcp(create_server(), port=port) as url:
        yield url


@asynccontextmanager
async def serve_conformance_upstream() -> AsyncIterator[str]:
    """Serve tests/servers/conformance_server.py (every fixture the MCP conformance suite calls) in-process."""
    from tests.servers.conformance_server import build_app

    async with serve_asgi(build_app("127.0.0.1")) as url:
        yield url


def connected(*names: str) -> PoolCondition:
    """A pool condition: every upstream in `names` is registered and has a live session."""

    def holds(pool: UpstreamPool) -> bool:
        states = {upstream.name: upstream.state for upstream in pool}
        return all(states.get(name) in LIVE_STATES for name in names)

    return holds


@dataclass(frozen=True, slots=True)
class LiveGateway:
    """A running in-process gateway: its /mcp URL, its live parts, its folder and what it logged."""

    url: str
    gateway: Gateway
    directory: Path
    log: LogLines
    app: ASGIApp | None = None
    """The gateway's HTTP application (its routes: `/mcp` is the lean path's app when `lean_path` is on)."""

    @property
    def admin_url(self) -> str:
        """The management endpoint's URL, `http://127.0.0.1:PORT/mcp/admin`."""
        return self.base + ADMIN

    @property
    def base(self) -> str:
        """The gateway's origin, `http://127.0.0.1:PORT`."""
        return self.url.removesuffix("/mcp")

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, as nginx's upstream blocks name it."""
        return self.base.removeprefix("http://")

    @property
    def servers_file(self) -> Path:
        return self.directory / "servers.yaml"

    @property
    def scopes_file(self) -> Path:
        return self.directory / "scopes.yml"

    @property
    def audit_log(self) -> Path:
        return self.gateway.settings.data_dir / "audit.log"

    async def wait_until(self, condition: PoolCondition, deadline: float = STARTUP_DEADLINE) -> None:
        """Return once `condition(pool)` holds (see `connected`); fails after `deadline` seconds."""
        with anyio.fail_after(deadline):
            await self.gateway.pool.wait_until(condition)

    @asynccontextmanager
    async def client(
        self,
        sub: str = "alice",
        *,
        groups: Sequence[str] = (),
        scopes: Sequence[str] = (),
        era: Era = "auto",
        token: str | None = None,
        path: str = "/mcp",
        **options: Any,
    ) -> AsyncIterator[Client]:
        """An MCP client of this gateway as `sub` (or with `token` as it is), in `era`."""
        bearer = token if token is not None else token_for(sub, groups=groups, scopes=scopes)
        async with (
            self.http(bearer) as http,
            Client(streamable_http_client(self.base + path, http_client=http), mode=era, **options) as client,
        ):
            yield client

    def member(self, *groups: str, era: Era = "auto", **options: Any) -> AbstractAsyncContextManager[Client]:
        """An MCP client of this gateway as a member of `groups` (see `member_token`)."""
        return self.client(token=member_token(groups), era=era, **options)

    def admin(self, era: Era = "auto", **options: Any) -> AbstractAsyncContextManager[Client]:
        """A client of the management endpoint as `root`, a member of `admins` (the policies' administrators)."""
        return self.client("root", groups=["admins"], era=era, path=ADMIN, **options)

    def http(self, token: str | None = None, **options: Any) -> httpx2.AsyncClient:
        """A plain HTTP client of this gateway (base URL set), with `token` as its bearer when given."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx2.AsyncClient(base_url=self.base, headers=headers, trust_env=False, **options)


@contextmanager
def unchanged(path: Path) -> Iterator[None]:
    """Fail if the text of `path` after the block differs from before it (what was refused left no trace)."""
    before = path.read_text()
    yield
    assert path.read_text() == before, f"{path.name} changed"


def write_files(directory: Path, servers: Mapping[str, Any], scopes: str | None) -> Path:
    """Write `directory`/servers.yaml (servers in the order given, and scopes.yml); return the servers file."""
    directory.mkdir(parents=True, exist_ok=True)
    servers_file = directory / "servers.yaml"
    registered = {"servers": {name: dict(spec) for name, spec in servers.items()}}
    servers_file.write_text(yaml.safe_dump(registered, sort_keys=False))  # the first registered wins a collision
    if scopes is not None:
        (directory / "scopes.yml").write_text(scopes)
    return servers_file


def build_test_gateway(
    directory: Path, *, servers: Mapping[str, Any], scopes: str | None = None, secured: bool = True, **settings: Any
) -> Gateway:
    """Write servers.yaml (and scopes.yml) into `directory` and build a gateway as `serve_gateway` does, without
    serving it: for tests that serve its app their own way (see `serve_gateway` for the arguments)."""
    servers_file = write_files(directory, servers, scopes)
    if scopes is not None:
        settings.setdefault("scopes_file", directory / "scopes.yml")
    return gateway_from_files(directory, servers_file, secured=secured, **settings)


def gateway_from_files(
    directory: Path, servers_file: Path, *, secured: bool = True, tracing: Tracing | None = None, **settings: Any
) -> Gateway:
    """Build a gateway from `servers_file` (and a `scopes_file` setting, if any), its data under `directory`/data;
    `secured` as in `serve_gateway`, `tracing` as `build_gateway` takes it."""
    settings.setdefault("data_dir", directory / "data")
    settings.setdefault("search_uri", str(directory / "data" / "index"))
    settings.setdefault("auth", AUTH if secured else AuthSettings())
    configured = load_settings(None, servers_file=servers_file, host="127.0.0.1", **settings)
    return build_gateway(configured, load_servers(servers_file), tracing)


@asynccontextmanager
async def serve_gateway(
    directory: Path,
    *,
    servers: Mapping[str, Any],
    scopes: str | None = None,
    secured: bool = True,
    wait_for_upstreams: bool = True,
    **settings: Any,
) -> AsyncIterator[LiveGateway]:
    """Write servers.yaml (and scopes.yml) into `directory`, then build and serve a gateway in-process.

    `secured` gateways accept tokens from `token_for` (pass `auth=...` for other verifiers); others
    treat every caller as unrestricted (what `--insecure-dev` does). Extra keyword arguments are
    settings; a `port` setting is also the port it is served on (default: a free one, and the
    setting's own default). By default the gateway is yielded once every upstream's first connection
    attempt has settled (connected, or failed once).
    """
    gateway = build_test_gateway(directory, servers=servers, scopes=scopes, secured=secured, **settings)
    until = UpstreamPool.all_settled if wait_for_upstreams else None
    async with serve_built(gateway, directory, port=settings.get("port", 0), until=until) as live:
        yield live


@asynccontextmanager
async def serve_built(
    gateway: Gateway, directory: Path, *, port: int = 0, until: PoolCondition | None = UpstreamPool.all_settled
) -> AsyncIterator[LiveGateway]:
    """Serve a built `gateway` in-process until the block ends; yielded once it is ready and its pool holds
    `until` (None: at once)."""
    ready = anyio.Event()
    with captured_logs() as log:
        app = create_app(gateway, on_ready=ready.set)
        async with serve_asgi(app, port=port) as url:
            with anyio.fail_after(STARTUP_DEADLINE):
                await ready.wait()
                if until is not None:
                    await gateway.pool.wait_until(until)
            yield LiveGateway(url, gateway, directory, log, app)


MANAGED: Mapping[str, Any] = {"servers_reload_interval": 0.2, "admin_allowed_networks": ["127.0.0.0/8"]}
"""Settings for a gateway whose tests register servers: servers.yaml is reloaded at once, and registrations may
name the loopback upstreams of the tests (`serve_upstreams(..., **MANAGED)`)."""


def serve_upstreams(
    directory: Path, upstreams: Mapping[str, str], *, scopes: str, **settings: Any
) -> AbstractAsyncContextManager[LiveGateway]:
    """A secured gateway in front of the streamable-HTTP `upstreams` (name -> /mcp URL), without rate limit
    unless `rate_limit_per_second` says otherwise: what a module's shared gateway usually is."""
    settings.setdefault("rate_limit_per_second", 0)
    servers = {name: {"transport": "streamable-http", "url": url} for name, url in upstreams.items()}
    return serve_gateway(directory, servers=servers, scopes=scopes, **settings)
