"""The operator's commands that connect to the upstreams: index, search, and check-config --connect.

They build a whole gateway (and the finder's index), so they live apart from the light commands.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from aggregator.catalog.names import host_name, over_budget
from aggregator.cli.common import load
from aggregator.config.logs import configure_logging
from aggregator.config.settings import Settings
from aggregator.registry.models import ServersFile
from aggregator.search import Embedder, ToolIndex
from aggregator.server.gateway import Gateway, build_gateway
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.state import UpstreamState

CONNECTED = (UpstreamState.HEALTHY, UpstreamState.DEGRADED)


def index(args: argparse.Namespace) -> int:
    return _with_index(args, None, 0)


def search(args: argparse.Namespace) -> int:
    return _with_index(args, args.query, args.top_k)


def _with_index(args: argparse.Namespace, query: str | None, top_k: int) -> int:
    """Operator access to the finder's index: sync it with the live catalog, then report or search."""
    settings, servers = load(args)
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


def check_names(settings: Settings, servers: ServersFile) -> int:
    """Connect to every upstream (bounded): report each one that cannot be reached, and exported names
    that would pass the hosts' budget. Exit status 1 when either is found."""
    configure_logging("warning")
    gateway = build_gateway(settings, servers)

    async def listed() -> tuple[list[str], list[str]]:
        async with _connected(gateway):
            failures = [
                f"{upstream.name}: not reachable: {upstream.last_error or 'no answer within connect_timeout'}"
                for upstream in gateway.pool
                if upstream.spec.enabled and upstream.state not in CONNECTED
            ]
            return [entry.item.name for entry in gateway.catalog.tools()], failures

    names, failures = anyio.run(listed)
    for failure in failures:
        print(f"  {failure}")
    long_names = over_budget(names, settings.host_server_name, settings.name_budget)
    print(f"tools: {len(names)} exported; {len(long_names)} over the {settings.name_budget}-character host budget")
    for name, length in long_names:
        print(f"  {host_name(settings.host_server_name, name)} ({length} chars): shorten its server's `prefix`")
    if failures:
        print(f"upstreams: {len(failures)} of {len(servers.servers)} not reachable")
    return 1 if long_names or failures else 0
