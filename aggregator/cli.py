"""`mcp-aggregator` commands: serve, stdio, check-config."""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import uvicorn
from mcp.server.stdio import stdio_server

from aggregator.app import build_gateway, create_app
from aggregator.config import ServersFile, Settings, load_servers, load_settings
from aggregator.errors import ConfigError
from aggregator.logs import configure_logging
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

    serve = configured("serve", "Serve the aggregated MCP endpoint over HTTP (/mcp, /sse).")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind; 0 picks a free one (default 8000)")
    serve.set_defaults(command=_serve)

    stdio = configured("stdio", "Serve the aggregated MCP endpoint over stdin/stdout, for hosts that launch commands.")
    stdio.set_defaults(command=_stdio)

    check = configured("check-config", "Validate the settings and servers files and report every problem.")
    check.add_argument("servers_file", nargs="?", type=Path, help="servers.yaml to check (overrides --servers)")
    check.set_defaults(command=_check_config)
    return parser


def _load(args: argparse.Namespace, **overrides: object) -> tuple[Settings, ServersFile]:
    servers_file = getattr(args, "servers_file", None) or args.servers
    settings = load_settings(args.config, servers_file=servers_file, **overrides)
    return settings, load_servers(settings.servers_file)


def _serve(args: argparse.Namespace) -> int:
    settings, servers = _load(args, host=args.host, port=args.port)
    configure_logging(settings.log_level)
    gateway = build_gateway(settings, servers)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
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
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _stdio(args: argparse.Namespace) -> int:
    settings, servers = _load(args)
    configure_logging(settings.log_level)
    gateway = build_gateway(settings, servers)

    async def run() -> None:
        async with gateway.pool:
            # Hosts list tools right after connecting and may never ask again: let the first
            # connection attempts finish (an unreachable upstream fails fast; a hung one is bounded).
            with anyio.move_on_after(settings.connect_timeout):
                await gateway.pool.wait_until(UpstreamPool.all_settled)
            async with stdio_server() as (read, write):
                await gateway.server.run(read, write, gateway.server.create_initialization_options())

    anyio.run(run)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings, servers = _load(args)
    enabled = [name for name, spec in servers.servers.items() if spec.enabled]
    print(f"{settings.servers_file}: OK, {len(servers.servers)} servers ({len(enabled)} enabled)")
    for name, spec in servers.servers.items():
        state = "enabled" if spec.enabled else "disabled"
        print(f"  {name}: {spec.transport}, {state}")
    return 0
