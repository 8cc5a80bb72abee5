"""`mcp-aggregator` commands: serve, stdio, check-config, token, nginx, import, tui, login."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType

import anyio
import uvicorn
from mcp.server.stdio import stdio_server

from aggregator.catalog.names import host_name, over_budget
from aggregator.cli import login
from aggregator.config.logs import configure_logging
from aggregator.config.settings import Settings, load_login_settings, load_settings
from aggregator.errors import AccessDeniedError, AuthenticationError, ConfigError, NginxError
from aggregator.http.app import LOOPBACK, create_app
from aggregator.http.auth import INSECURE_DEV_PRINCIPAL
from aggregator.nginx import NginxControl, NginxPaths, apply, render
from aggregator.policy.principal import Principal, current_principal
from aggregator.policy.revocation import RevocationList
from aggregator.policy.scopes import describe, load_scopes
from aggregator.policy.vending import mint_token
from aggregator.registry import importer
from aggregator.registry.models import ServersFile, load_servers
from aggregator.search import Embedder, ToolIndex
from aggregator.server.gateway import Gateway, build_gateway
from aggregator.upstreams.pool import UpstreamPool

logger = logging.getLogger(__name__)

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mcp-aggregator` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except ConfigError as error:
        print(f"mcp-aggregator: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except AccessDeniedError as error:
        print(f"mcp-aggregator: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-aggregator", description="One MCP endpoint for many MCP servers.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def configured(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--config", type=Path, help="gateway settings YAML (env MCP_AGGREGATOR_* override it)")
        sub.add_argument("--servers", type=Path, help="servers.yaml (default: servers_file from the settings)")
        return sub

    insecure = "serve without verifying callers (loopback only; every caller may do everything)"
    serve = configured("serve", "Serve the aggregated MCP endpoint over HTTP (/mcp, /sse).")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind; 0 picks a free one (default 8000)")
    serve.add_argument("--insecure-dev", action="store_true", help=insecure)
    serve.set_defaults(command=_serve)

    stdio = configured("stdio", "Serve the aggregated MCP endpoint over stdin/stdout, for hosts that launch commands.")
    stdio.add_argument("--insecure-dev", action="store_true", help="run as an unrestricted local principal")
    stdio.set_defaults(command=_stdio)

    token = commands.add_parser("token", help="Mint or revoke gateway tokens (HS256, first auth.gateway_keys key).")
    actions = token.add_subparsers(required=True, metavar="ACTION")
    mint = actions.add_parser("mint", help="print a new access token")
    mint.add_argument("--config", type=Path, help="gateway settings YAML with auth.gateway_keys")
    mint.add_argument("--sub", required=True, help="subject (user or agent id)")
    mint.add_argument("--scopes", default="", help="comma-separated scopes from scopes.yml")
    mint.add_argument("--groups", default="", help="comma-separated groups (mapped to scopes by scopes.yml)")
    mint.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    mint.add_argument("--client-id", help="client id (default: the subject)")
    mint.set_defaults(command=_token_mint)
    revoke = actions.add_parser("revoke", help="revoke a token by its jti")
    revoke.add_argument("--config", type=Path, help="gateway settings YAML (for data_dir)")
    revoke.add_argument("jti")
    revoke.set_defaults(command=_token_revoke)

    check = configured("check-config", "Validate the settings and servers files and report every problem.")
    check.add_argument("servers_file", nargs="?", type=Path, help="servers.yaml to check (overrides --servers)")
    check.add_argument("--connect", action="store_true", help="also list every upstream's tools and check name lengths")
    check.set_defaults(command=_check_config)

    index = configured("index", "Connect to the upstreams, bring the tool index up to date (embedding what changed).")
    index.set_defaults(command=_index)
    search = configured("search", "Search the tool index as an operator (every tool, no caller policy).")
    search.add_argument("query", help="what the tool should do, in plain words")
    search.add_argument("--top-k", type=int, default=5, help="how many tools (default 5)")
    search.set_defaults(command=_search)

    seed = configured("import", "Import mcp-gateway-registry server records (DIR/*.json, server_state.json).")
    seed.add_argument("directory", type=Path, metavar="DIR", help="the seed's registry/servers folder")
    seed.add_argument("--replace", action="store_true", help="overwrite servers that are already registered")
    seed.add_argument("--dry-run", action="store_true", help="report what would be imported; write nothing")
    seed.set_defaults(command=_import)

    nginx = commands.add_parser("nginx", help="Render the nginx passthrough config; validate, install, reload it.")
    nginx_actions = nginx.add_subparsers(required=True, metavar="ACTION")
    for action, help in (
        ("render", "render, validate (nginx -t) and install the config atomically; no reload"),
        ("reload", "the same, then reload the running nginx if the config changed"),
    ):
        sub = nginx_actions.add_parser(action, help=help, description=help)
        sub.add_argument("--config", type=Path, help="gateway settings YAML (its `nginx` section)")
        sub.add_argument("--servers", type=Path, help="servers.yaml (default: servers_file from the settings)")
        sub.set_defaults(command=_nginx, reload=action == "reload")
    nginx_actions.choices["render"].add_argument("--stdout", action="store_true", help="only print the config")
    nginx_actions.choices["reload"].add_argument("--force", action="store_true", help="reload even if unchanged")

    console = commands.add_parser("tui", help="The operator console: manage a running gateway through its admin tools.")
    console.add_argument("--url", default="http://127.0.0.1:8000/mcp", help="the gateway's MCP URL (%(default)s)")
    console.add_argument("--token", help=f"gateway bearer token (default: ${TOKEN_VARIABLE}, which keeps it out of ps)")
    console.set_defaults(command=_tui)

    sign_in = commands.add_parser(
        "login", help="Sign in as a user (OAuth 2.1 authorization code + PKCE) and store the tokens (mode 0600)."
    )
    sign_in.add_argument("--issuer", help="the authorization server (OIDC discovery finds its endpoints)")
    sign_in.add_argument("--client-id", help="the public client registered for this CLI at the issuer")
    sign_in.add_argument("--scope", action="append", dest="scopes", help="a scope to request (repeatable)")
    sign_in.add_argument("--resource", help="RFC 8707 resource indicator: the gateway's MCP URL or audience")
    sign_in.add_argument("--token-file", type=Path, help="where the tokens go (~/.config/mcp-aggregator/tokens.json)")
    sign_in.add_argument("--port", type=int, help="loopback port of the redirect (default: a free one)")
    sign_in.add_argument("--no-browser", action="store_true", help="print the sign-in URL; do not open a browser")
    sign_in.add_argument("--refresh", action="store_true", help="only refresh the stored tokens (no browser)")
    sign_in.set_defaults(command=_login)
    return parser


def _load(args: argparse.Namespace, **overrides: object) -> tuple[Settings, ServersFile]:
    servers_file = getattr(args, "servers_file", None) or args.servers
    settings = load_settings(args.config, servers_file=servers_file, **overrides)
    return settings, load_servers(settings.servers_file)


def _serve(args: argparse.Namespace) -> int:
    settings, servers = _load(args, host=args.host, port=args.port)
    configure_logging(settings.log_level)
    if refusal := _refuse_insecure(settings, args.insecure_dev):
        print(f"mcp-aggregator: {refusal}", file=sys.stderr)
        return EXIT_CONFIG
    gateway = build_gateway(settings, servers)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # IPPROTO_TCP (not 0) lets asyncio recognise the socket as TCP and set TCP_NODELAY on each
    # connection; without it a response written in two parts waits ~40 ms for a delayed ACK.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((settings.host, settings.port))
    except OSError as error:
        print(f"mcp-aggregator: cannot listen on {settings.host}:{settings.port}: {error.strerror}", file=sys.stderr)
        return 1
    listener.listen(512)
    port = listener.getsockname()[1]
    host = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
    url = settings.public_url or f"http://{host}:{port}/mcp"

    def announce() -> None:
        client_config = {"mcpServers": {"aggregator": {"type": "http", "url": url}}}
        print(f"READY {url}", file=sys.stderr)
        print(
            f"Client config (Claude Desktop, Cursor, VS Code):\n{json.dumps(client_config, indent=2)}", file=sys.stderr
        )
        sys.stderr.flush()

    app = create_app(gateway, on_ready=announce)
    # h11, not httptools: h11 strips optional whitespace around header values as HTTP requires, and the
    # 2026-07-28 Mcp-Name/Mcp-Method checks compare those values with the body.
    config = uvicorn.Config(
        app, http="h11", log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=10
    )
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _stopped(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises SIGTERM once its graceful shutdown (upstreams closed, children reaped) is done:
    end the process there as the default action would, but with status 0, since the stop was clean."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _refuse_insecure(settings: Settings, insecure_dev: bool) -> str | None:
    """Why the gateway must not start with these auth settings, or None. Deny by default."""
    if settings.auth.enabled:
        if insecure_dev:
            return "--insecure-dev conflicts with the configured token verifiers; drop one of them"
        return None
    if not insecure_dev:
        return (
            "no token verifier is configured (auth.gateway_keys or auth.oidc_issuers), so callers cannot be "
            "identified; configure one, or pass --insecure-dev for local development on loopback"
        )
    if settings.host not in LOOPBACK:
        return f"--insecure-dev is only allowed on loopback, not on {settings.host}"
    logger.warning("gateway.insecure_dev", extra={"detail": "callers are not verified; every caller is unrestricted"})
    return None


def _stdio(args: argparse.Namespace) -> int:
    settings, servers = _load(args)
    configure_logging(settings.log_level)
    gateway = build_gateway(settings, servers)

    refusals: list[str] = []

    async def run() -> None:
        async with gateway.running():
            # Verified here, not before: an OIDC issuer's keys come through the gateway's HTTP client,
            # which `running()` opens.
            try:
                principal = await _stdio_principal(gateway, args.insecure_dev)
            except AuthenticationError as error:
                refusals.append(error.reason)
                return
            current_principal.set(principal)
            # Hosts list tools right after connecting and may never ask again: let the first
            # connection attempts finish (an unreachable upstream fails fast; a hung one is bounded).
            with anyio.move_on_after(settings.connect_timeout):
                await gateway.pool.wait_until(UpstreamPool.all_settled)
            async with stdio_server() as (read, write):
                await gateway.server.run(read, write, gateway.server.create_initialization_options())

    anyio.run(run)
    if refusals:
        print(f"mcp-aggregator: {TOKEN_VARIABLE} is not accepted: {refusals[0]}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


TOKEN_VARIABLE = "MCP_AGGREGATOR_TOKEN"


def _login(args: argparse.Namespace) -> int:
    scopes = tuple(scope for given in args.scopes or () for scope in given.split())
    settings = load_login_settings(
        issuer=args.issuer,
        client_id=args.client_id,
        scopes=scopes or None,
        resource=args.resource,
        token_file=args.token_file,
        redirect_port=args.port,
    )
    return login.run(settings, refresh_only=args.refresh, open_browser=not args.no_browser)


def _tui(args: argparse.Namespace) -> int:
    from tui.app import OperatorApp  # Textual loads only for this command
    from tui.client import HttpTarget

    OperatorApp(HttpTarget(args.url, args.token or os.environ.get(TOKEN_VARIABLE))).run()
    return 0


async def _stdio_principal(gateway: Gateway, insecure_dev: bool) -> Principal:
    """stdio has no HTTP headers: the caller's identity is a token in the environment."""
    token = os.environ.get(TOKEN_VARIABLE)
    if token and gateway.verifier is not None:
        return await gateway.verifier.verify(token)
    if insecure_dev:
        logger.warning("gateway.insecure_dev", extra={"detail": "stdio caller is unrestricted"})
        return INSECURE_DEV_PRINCIPAL
    raise AuthenticationError(f"set {TOKEN_VARIABLE} to a gateway token (or pass --insecure-dev)")


def _token_mint(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    token, claims = mint_token(
        settings.auth,
        args.sub,
        _split(args.scopes),
        args.ttl,
        client_id=args.client_id,
        groups=_split(args.groups),
    )
    print(token)
    print(f"jti={claims['jti']} expires={claims['exp']} scopes={claims['scope']!r}", file=sys.stderr)
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    RevocationList(settings.data_dir / "revoked.json").revoke(args.jti)
    print(f"revoked {args.jti}; running gateways refuse it from their next request on", file=sys.stderr)
    return 0


def _split(values: str) -> list[str]:
    return [value.strip() for value in values.split(",") if value.strip()]


def _nginx(args: argparse.Namespace) -> int:
    settings, servers = _load(args)
    configure_logging(settings.log_level)
    try:
        if getattr(args, "stdout", False):
            print(render(settings, servers).text, end="")
            return 0
        control = NginxControl(settings.nginx.binary, NginxPaths.from_settings(settings))
        outcome, _ = apply(settings, servers, control, reload=args.reload, force=getattr(args, "force", False))
    except NginxError as error:
        print(f"mcp-aggregator: {error}", file=sys.stderr)
        return 1
    state = "updated" if outcome.changed else "unchanged"
    reloaded = "; nginx reloaded" if outcome.reloaded else ""
    print(f"{control.paths.config_file}: {state}{reloaded}")
    print(f"  passthrough: {', '.join(f'/{name}/' for name in outcome.passthrough) or 'none'}")
    for name, reason in outcome.skipped.items():
        print(f"  skipped {name}: {reason}")
    return 0


def _import(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, servers_file=args.servers)
    configure_logging(settings.log_level)
    reserved = frozenset({settings.gateway_server_name})
    if args.dry_run:
        seed = importer.read_seed(args.directory)
        report = importer.dry_run(seed, settings.servers_file, replace=args.replace, reserved=reserved)
    else:
        report = anyio.run(
            lambda: importer.import_into(args.directory, settings.servers_file, replace=args.replace, reserved=reserved)
        )
    print("\n".join(importer.describe(report, settings.servers_file, dry_run=args.dry_run)))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings, servers = _load(args)
    enabled = [name for name, spec in servers.servers.items() if spec.enabled]
    print(f"{settings.servers_file}: OK, {len(servers.servers)} servers ({len(enabled)} enabled)")
    for name, spec in servers.servers.items():
        state = "enabled" if spec.enabled else "disabled"
        print(f"  {name}: {spec.transport}, {state}")
    if settings.scopes_file is not None:
        counts = describe(load_scopes(settings.scopes_file))
        summary = f"{counts['groups']} groups, {counts['scopes']} scopes, {counts['rules']} rules"
        print(f"{settings.scopes_file}: OK, {summary}")
    verifiers = len(settings.auth.gateway_keys) + len(settings.auth.oidc_issuers)
    print(f"auth: {verifiers} token verifiers" if verifiers else "auth: none configured (serve needs --insecure-dev)")
    if args.connect:
        return _check_names(settings, servers)
    return 0


def _index(args: argparse.Namespace) -> int:
    return _with_index(args, None, 0)


def _search(args: argparse.Namespace) -> int:
    return _with_index(args, args.query, args.top_k)


def _with_index(args: argparse.Namespace, query: str | None, top_k: int) -> int:
    """Operator access to the finder's index: sync it with the live catalog, then report or search."""
    settings, servers = _load(args)
    configure_logging("warning")
    gateway = build_gateway(settings, servers)
    uri = settings.search_uri or settings.data_dir / "index"

    async def run() -> None:
        async with _connected(gateway), ToolIndex(uri, Embedder(settings.search_model)) as index:
            report = await index.sync(gateway.finder.documents())
            await index.wait_embedded()
            print(
                f"{uri}: {index.size} tools ({report.added} added, {report.updated} updated, "
                f"{report.removed} removed, {report.unchanged} unchanged; {report.embedded} texts embedded)"
            )
            if query is not None:
                names = frozenset(entry.item.name for entry in gateway.catalog.tools())  # no caller policy
                result = await index.search(query, allowed=names, top_k=top_k)
                for hit in result.hits:
                    summary = hit.description.splitlines()[0] if hit.description else ""
                    print(f"  {hit.score:.3f}  {hit.name}: {summary}")

    anyio.run(run)
    return 0


@asynccontextmanager
async def _connected(gateway: Gateway) -> AsyncIterator[None]:
    """The upstreams connected (each first attempt settled, bounded) and the catalog built from them."""
    async with gateway.pool:
        with anyio.move_on_after(gateway.settings.connect_timeout):
            await gateway.pool.wait_until(UpstreamPool.all_settled)
        gateway.catalog.rebuild(gateway.pool)
        yield


def _check_names(settings: Settings, servers: ServersFile) -> int:
    """Connect to every upstream (bounded) and report exported names that would pass the hosts' budget."""
    configure_logging("warning")
    gateway = build_gateway(settings, servers)

    async def listed() -> list[str]:
        async with _connected(gateway):
            for upstream in gateway.pool:
                if upstream.last_error:
                    print(f"  {upstream.name}: not reachable: {upstream.last_error}")
            return [entry.item.name for entry in gateway.catalog.tools()]

    names = anyio.run(listed)
    long_names = over_budget(names, settings.host_server_name, settings.name_budget)
    print(f"tools: {len(names)} exported; {len(long_names)} over the {settings.name_budget}-character host budget")
    for name, length in long_names:
        print(f"  {host_name(settings.host_server_name, name)} ({length} chars): shorten its server's `prefix`")
    return 1 if long_names else 0
