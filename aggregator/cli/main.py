"""`mcp-aggregator`: the command line. Parsing is cheap; a command's module is imported only when it runs.

serve, stdio                                              aggregator.cli.serve
token, nginx, import, check-config, config, tui, login    aggregator.cli.operate
index                                                     aggregator.cli.connect
search                                                    aggregator.cli.finder
tools diff|approve|reject                                 aggregator.cli.tools
registries list|refresh                                   aggregator.cli.registries
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from aggregator.cli.common import EXIT_CONFIG, TOKEN_VARIABLE
from aggregator.errors import AccessDeniedError, ConfigError

HOST_FORMATS = ("claude-desktop", "claude-code", "cursor", "vscode", "fastmcp")
"""`import --from` values (aggregator.registry.hosts.HOSTS; not imported here, to keep parsing cheap)."""
REGISTRIES_URL = "http://127.0.0.1:8000/mcp/admin"
"""Where `registries refresh` asks by default: a local gateway's management endpoint."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mcp-aggregator` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    module, function = str(args.command).split(":")
    command: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(f"aggregator.cli.{module}"), function
    )
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
    serve.set_defaults(command="serve:serve")

    stdio = configured("stdio", "Serve the aggregated MCP endpoint over stdin/stdout, for hosts that launch commands.")
    stdio.add_argument("--insecure-dev", action="store_true", help="run as an unrestricted local principal")
    stdio.set_defaults(command="serve:stdio")

    token = commands.add_parser("token", help="Mint or revoke gateway tokens (HS256, first auth.gateway_keys key).")
    actions = token.add_subparsers(required=True, metavar="ACTION")
    mint = actions.add_parser("mint", help="print a new access token")
    mint.add_argument("--config", type=Path, help="gateway settings YAML with auth.gateway_keys")
    mint.add_argument("--sub", required=True, help="subject (user or agent id)")
    mint.add_argument("--scopes", default="", help="comma-separated scopes from scopes.yml")
    mint.add_argument("--groups", default="", help="comma-separated groups (mapped to scopes by scopes.yml)")
    mint.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    mint.add_argument("--client-id", help="client id (default: the subject)")
    mint.set_defaults(command="operate:token_mint")
    revoke = actions.add_parser("revoke", help="revoke a token by its jti")
    revoke.add_argument("--config", type=Path, help="gateway settings YAML (for data_dir)")
    revoke.add_argument("jti")
    revoke.set_defaults(command="operate:token_revoke")

    check = configured("check-config", "Validate the settings and servers files and report every problem.")
    check.add_argument("servers_file", nargs="?", type=Path, help="servers.yaml to check (overrides --servers)")
    check.add_argument("--connect", action="store_true", help="also list every upstream's tools and check name lengths")
    check.set_defaults(command="operate:check_config")

    index = configured("index", "Connect to the upstreams, bring the tool index up to date (embedding what changed).")
    index.set_defaults(command="connect:index")
    search = configured(
        "search",
        "Search the stored tool index as an operator (every tool, no caller policy), "
        "or with --url a running gateway as the token's caller (only the tools it may call).",
    )
    search.add_argument("query", help="what the tool should do, in plain words")
    search.add_argument("--top-k", type=int, default=5, help="how many tools (default 5)")
    search.add_argument("--full-text", action="store_true", help="rank by keywords alone (no model: instant)")
    search.add_argument("--url", help="ask the gateway at this MCP URL (its intelligent_tool_finder) instead")
    search.add_argument("--token", help=f"with --url: bearer token (default: ${TOKEN_VARIABLE})")
    search.set_defaults(command="finder:search")

    seed = configured(
        "import",
        "Import servers into servers.yaml: mcp-gateway-registry records (DIR/*.json, server_state.json), "
        "or with --from a host's JSON (mcpServers / servers), its credentials as ${VAR} references.",
    )
    seed.add_argument("directory", type=Path, metavar="SOURCE", help="the seed's registry/servers folder, or FILE")
    seed.add_argument("--from", dest="host", choices=HOST_FORMATS, help="FILE is this host's MCP server config")
    seed.add_argument("--env-file", type=Path, help="with --from: write the credentials taken out to this file (0600)")
    seed.add_argument("--replace", action="store_true", help="overwrite servers that are already registered")
    seed.add_argument("--dry-run", action="store_true", help="report what would be imported; write nothing")
    seed.set_defaults(command="operate:import_records")

    _tools_parser(commands)
    _registries_parser(commands)

    settings = commands.add_parser(
        "config", help="Print the settings in effect (secrets masked), or with --reference every setting there is."
    )
    settings.add_argument("--config", type=Path, help="gateway settings YAML (env MCP_AGGREGATOR_* override it)")
    settings.add_argument(
        "--reference", action="store_true", help="print docs/settings.md: every key, type, default, variable"
    )
    settings.set_defaults(command="operate:show_config")

    nginx = commands.add_parser("nginx", help="Render the nginx passthrough config; validate, install, reload it.")
    nginx_actions = nginx.add_subparsers(required=True, metavar="ACTION")
    for action, help in (
        ("render", "render, validate (nginx -t) and install the config atomically; no reload"),
        ("reload", "the same, then reload the running nginx if the config changed"),
    ):
        sub = nginx_actions.add_parser(action, help=help, description=help)
        sub.add_argument("--config", type=Path, help="gateway settings YAML (its `nginx` section)")
        sub.add_argument("--servers", type=Path, help="servers.yaml (default: servers_file from the settings)")
        sub.set_defaults(command="operate:nginx", reload=action == "reload")
    nginx_actions.choices["render"].add_argument("--stdout", action="store_true", help="only print the config")
    nginx_actions.choices["reload"].add_argument("--force", action="store_true", help="reload even if unchanged")

    console = commands.add_parser("tui", help="The operator console: manage a running gateway through its admin tools.")
    console.add_argument("--url", default="http://127.0.0.1:8000/mcp", help="the gateway's MCP URL (%(default)s)")
    console.add_argument("--token", help=f"gateway bearer token (default: ${TOKEN_VARIABLE}, which keeps it out of ps)")
    console.set_defaults(command="operate:tui")

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
    sign_in.set_defaults(command="operate:login")
    return parser


def _tools_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tools = commands.add_parser(
        "tools", help="Held tool definitions (data_dir/pins.json): diff, approve, reject; running gateways follow."
    )
    actions = tools.add_subparsers(required=True, metavar="ACTION")
    diff = actions.add_parser("diff", help="show held definitions: why held, fingerprint, diff against the pinned one")
    diff.add_argument("server", nargs="?", help="only this server's held tools")
    diff.add_argument("tool", nargs="?", help="only this tool (its name as the server lists it)")
    diff.add_argument("--json", action="store_true", help="print JSON")
    diff.set_defaults(command="tools:diff")
    for action, help in (
        ("approve", "pin a held definition: it is served"),
        ("reject", "keep it out until it changes"),
    ):
        verdict = actions.add_parser(action, help=help, description=help)
        verdict.add_argument("server", help="the server that offers the tool")
        verdict.add_argument("tool", help="the tool's name as the server lists it")
        verdict.add_argument("--fingerprint", help="apply only if the held definition still has this fingerprint")
        verdict.set_defaults(command=f"tools:{action}")
    for sub in (diff, *(actions.choices[name] for name in ("approve", "reject"))):
        sub.add_argument("--config", type=Path, help="gateway settings YAML (for data_dir)")


def _registries_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    registries = commands.add_parser(
        "registries", help="The registries this gateway follows (servers.yaml registries:): list, refresh."
    )
    actions = registries.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the configured registries, or with --url the running gateway's state")
    listing.add_argument("--config", type=Path, help="gateway settings YAML (env MCP_AGGREGATOR_* override it)")
    listing.add_argument("--servers", type=Path, help="servers.yaml (default: servers_file from the settings)")
    listing.add_argument("--url", help="ask the gateway at this management endpoint (.../mcp/admin) instead")
    listing.set_defaults(command="registries:list_registries")
    again = actions.add_parser("refresh", help="have the running gateway read a registry (or every one) now")
    again.add_argument("name", nargs="?", help="the registry's name in servers.yaml (default: every one)")
    again.add_argument("--url", default=REGISTRIES_URL, help="the gateway's management endpoint (%(default)s)")
    again.set_defaults(command="registries:refresh")
    for sub in (listing, again):
        sub.add_argument("--token", help=f"bearer token of the caller (default: ${TOKEN_VARIABLE})")
        sub.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")
