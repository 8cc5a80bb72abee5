"""The operator's commands that connect to the upstreams: index, and check-config --connect.

They build a whole gateway (and the finder's index), so they live apart from the light commands.
`search` reads the stored index instead (aggregator.cli.finder): it connects to nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from aggregator.catalog.names import host_name, over_budget
from aggregator.cli.common import load
from aggregator.cli.progress import Progress, duration, quiet_model_loading
from aggregator.config.logs import configure_logging
from aggregator.config.settings import Settings
from aggregator.registry.models import ServersFile
from aggregator.search import Embedder, EmbedderUnavailableError, ToolIndex
from aggregator.server.gateway import Gateway, build_gateway
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.state import UpstreamState

CONNECTED = (UpstreamState.HEALTHY, UpstreamState.DEGRADED)


def index(args: argparse.Namespace) -> int:
    """Bring the stored tool index up to date with the live catalog, showing each step on stderr.

    The upstreams are connected only to list their tools; the model loads after the sync (so the
    full-text half is stored at once) and every text still without a vector is then embedded,
    with counts, rate and time left.
    """
    settings, servers = load(args)
    configure_logging("warning")
    quiet_model_loading()
    gateway = build_gateway(settings, servers)
    uri = settings.search_uri or settings.data_dir / "index"
    embedder = Embedder(settings.search_model, graph_cache=settings.data_dir / "encoder")
    enabled = sum(spec.enabled for spec in servers.servers.values())

    async def run() -> None:
        _say(f"upstreams: connecting {enabled} (each within {settings.connect_timeout:g}s)")
        async with _connected(gateway):
            failures = _failures(gateway)
            documents = gateway.finder.documents()
        _say(f"upstreams: {enabled - len(failures)} of {enabled} connected; {len(documents)} tools")
        for failure in failures:
            _say(f"  {failure}; its tools are left out of the index")
        async with ToolIndex(uri, embedder, load_model=False) as tool_index:
            report = await tool_index.sync(documents)
            embedded = await _embed(tool_index, embedder)
            print(
                f"{uri}: {tool_index.size} tools ({report.added} added, {report.updated} updated, "
                f"{report.removed} removed, {report.unchanged} unchanged; {embedded} texts embedded)"
            )

    anyio.run(run)
    return 0


async def _embed(tool_index: ToolIndex, embedder: Embedder) -> int:
    """Load the model, then wait until every stored text has its vector, reporting progress; how many were embedded."""
    pending = tool_index.pending
    if not pending:
        return 0
    _say(f"model: loading {embedder.model_id} ({pending} texts to embed)")
    started = time.monotonic()
    try:
        await embedder.load()
    except EmbedderUnavailableError as error:
        _say(f"model: {error}; searches use keywords until it loads")
        return 0
    _say(f"model: loaded in {duration(time.monotonic() - started)}")
    before = embedder.documents_encoded
    progress = Progress("embedding texts", pending, lambda: embedder.documents_encoded - before)
    async with anyio.create_task_group() as reporter:
        reporter.start_soon(progress.run)
        await tool_index.wait_embedded()
        reporter.cancel_scope.cancel()
    progress.finish()
    return embedder.documents_encoded - before


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _failures(gateway: Gateway) -> list[str]:
    return [
        f"{upstream.name}: not reachable: {upstream.last_error or 'no answer within connect_timeout'}"
        for upstream in gateway.pool
        if upstream.spec.enabled and upstream.state not in CONNECTED
    ]


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
            failures = _failures(gateway)
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
