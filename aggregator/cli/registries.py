"""`mcp-aggregator registries list|refresh`: the registries a gateway follows.

* `list` without `--url` prints the `registries:` of servers.yaml (the operator's view; nothing is
  read from the network). With `--url` it asks the running gateway's `list_registries` tool.
* `refresh [NAME]` asks the running gateway's `refresh_registry` tool to read one registry (or
  every one) now: a refresh only means something to a gateway that runs what it follows.

With `--url`, the command runs as the token's caller (`--token` or `$MCP_AGGREGATOR_TOKEN`) on the
management endpoint, permission-checked as any caller of those tools is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import anyio

from aggregator.cli.common import TOKEN_VARIABLE, load


def list_registries(args: argparse.Namespace) -> int:
    """Print the followed registries: configured ones (no --url), or the running gateway's statuses."""
    if args.url:
        return _ask(args, "list_registries", {})
    _, servers = load(args)
    if not servers.registries:
        print("no registries are followed (servers.yaml has no registries:)")
        return 0
    for name, registry in servers.registries.items():
        auth = registry.auth.type if registry.auth is not None else "none"
        print(f"{name}: {_shown(registry.url)} (auth {auth}, refresh every {registry.refresh:g} s)")
        if registry.prefix:
            print(f"  prefix: {registry.prefix}")
        for label, selection in (("include", registry.include), ("exclude", registry.exclude)):
            if not selection.empty:
                print(f"  {label}: {selection.model_dump_json(exclude_defaults=True)}")
    return 0


def refresh(args: argparse.Namespace) -> int:
    """Have the running gateway read one registry (or every one) now; print what it follows after."""
    return _ask(args, "refresh_registry", {"registry": args.name} if args.name else {})


def _shown(url: str) -> str:
    from aggregator.registry.federation_fetch import shown

    return shown(url)


def _ask(args: argparse.Namespace, tool: str, arguments: dict[str, Any]) -> int:
    """Call `tool` on the gateway's management endpoint as the token's caller; print its answer."""
    import httpx2
    from mcp import Client, MCPError
    from mcp.client.streamable_http import streamable_http_client

    token = args.token or os.environ.get(TOKEN_VARIABLE)

    async def call() -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120.0, trust_env=False) as http,
            Client(streamable_http_client(args.url, http_client=http)) as client,
        ):
            return await client.call_tool(tool, arguments)

    try:
        try:
            result = anyio.run(call)
        except BaseExceptionGroup as group:  # the client's task group wraps what went wrong
            error: BaseException = group
            while isinstance(error, BaseExceptionGroup):
                error = error.exceptions[0]
            raise error from None
    except (MCPError, httpx2.HTTPError, OSError) as error:
        return _fail(f"{args.url} refused {tool}: {type(error).__name__}: {error}")
    if result.is_error or not isinstance(result.structured_content, dict):
        text = " ".join(getattr(block, "text", "") for block in result.content)
        return _fail(f"{args.url} refused {tool}: {text or 'an error without a message'}")
    registries = result.structured_content.get("registries", [])
    if args.json:
        print(json.dumps(registries, indent=1))
        return 0
    if not registries:
        print("no registries are followed")
    for registry in registries:
        print(f"{registry['name']}: {registry['state']}  {registry['url']}")
        if registry.get("last_error"):
            print(f"  last error: {registry['last_error']}")
        for followed in registry.get("followed", []):
            print(f"  follows {followed['name']} ({followed['transport']}): {', '.join(followed['servers'])}")
        if registry.get("available"):
            print(f"  available (packages only, not run): {', '.join(registry['available'])}")
        for note in (*registry.get("skipped", []), *registry.get("conflicts", [])):
            print(f"  note: {note}")
    return 1 if any(registry["state"] in ("stale", "failing") for registry in registries) else 0


def _fail(message: str) -> int:
    print(f"mcp-aggregator: {message}", file=sys.stderr)
    return 1
