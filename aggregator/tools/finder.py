"""`intelligent_tool_finder` and discovery mode: the search index kept in step with the catalog.

The index (LanceDB under `data_dir/index`, or any LanceDB URI) opens on the first search, so a
gateway that is never asked pays nothing; from then on every catalog change is synced to it by
content hash. The model loads in a worker thread; until it is ready the finder answers from
full-text search and says so. A search only ever ranks the tools the caller may call.

Discovery mode (`/mcp?tools=discover`, or `discovery_mode: true` for stdio) lists only the finder,
`describe_tool` and `call_tool`, so a host with thousands of tools keeps a small context and
still reaches every tool it may call, through the same policy checks.

With `search_learning` on, the finder also learns from use (`aggregator.search.learning`): a call
that follows a finder answer to the same caller (on any path: `GatewayServer`'s edge reports every
successful `tools/call` to `called`, and `call_tool` here) raises that tool for that query next
time, within fixed bounds, and only among the tools the asking caller may call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
from pydantic import Field

from aggregator.catalog.catalog import Entry
from aggregator.policy.principal import Principal
from aggregator.search import Embedder, ToolDocument, ToolIndex
from aggregator.search.learning import UsagePrior, learned_search
from aggregator.tools.base import AdminTool, Arguments
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.state import UpstreamState

logger = logging.getLogger(__name__)

FINDER = "intelligent_tool_finder"
DESCRIBE = "describe_tool"
CALL = "call_tool"
_CALLABLE = (UpstreamState.HEALTHY, UpstreamState.DEGRADED)
SAVE_INTERVAL = 60.0
"""Seconds between saves of a changed prior (and once more when the gateway stops)."""


class FindTools(Arguments):
    query: str = Field(min_length=1, max_length=2000, description="What you want to do, in plain words.")
    top_k: int = Field(default=5, ge=1, le=50, description="How many tools to return.")
    tags: list[str] | None = Field(default=None, description="Only tools of servers with these tags.")
    servers: list[str] | None = Field(default=None, description="Only tools of these servers.")
    top_k_services: int | None = Field(default=None, ge=1, le=50, description="mcp-gateway-registry: ignored.")
    top_n_tools: int | None = Field(default=None, ge=1, le=50, description="mcp-gateway-registry: as top_k.")


class DescribeTool(Arguments):
    name: str = Field(min_length=1, description="The exported tool name, as the finder returned it.")


class CallTool(Arguments):
    name: str = Field(min_length=1, description="The exported tool name, as the finder returned it.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="The tool's arguments.")


class Finder:
    """The index behind `intelligent_tool_finder`, synced with the catalog."""

    def __init__(
        self,
        uri: str | Path,
        model: str | None,
        pool: UpstreamPool,
        tools: Callable[[], Iterable[Entry[Any]]],
        visible: Callable[[Principal], Iterable[Entry[Any]]],
        learning: Path | None = None,
        graph_cache: Path | None = None,
    ) -> None:
        self._uri = uri
        self._graph_cache = graph_cache
        self._learning = learning
        self.prior: UsagePrior | None = None
        """What the finder learned from use; None while it is off (`learning` None) or not loaded yet."""
        self._model = model
        self._pool = pool
        self._tools = tools
        self._visible = visible
        self._index: ToolIndex | None = None
        self._opened = anyio.Event()
        self._wanted = anyio.Event()
        self._changed = anyio.Event()

    def changed(self) -> None:
        """The catalog changed: sync the index (if it is open)."""
        self._changed.set()

    async def run(self) -> None:
        """Open the index on first use, then sync it on every catalog change (an app-lifespan task)."""
        await self._wanted.wait()
        if self._learning is not None:
            self.prior = await anyio.to_thread.run_sync(UsagePrior.load, self._learning)
        embedder = Embedder(self._model, graph_cache=self._graph_cache)
        async with ToolIndex(self._uri, embedder) as index, anyio.create_task_group() as tasks:
            await index.sync(self.documents())
            self._index = index
            self._opened.set()
            tasks.start_soon(self._announce_ready, index)
            if self.prior is not None:
                tasks.start_soon(self._keep_saved, self.prior)
            try:
                while True:
                    await self._changed.wait()
                    self._changed = anyio.Event()
                    await index.sync(self.documents())
            finally:
                self._index = None
                tasks.cancel_scope.cancel()
                if self.prior is not None and self.prior.dirty:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(self.prior.save, self.prior.records())

    async def _keep_saved(self, prior: UsagePrior) -> None:
        while True:
            await anyio.sleep(SAVE_INTERVAL)
            if prior.dirty:
                await anyio.to_thread.run_sync(prior.save, prior.records())

    def called(self, principal: Principal, name: str) -> None:
        """`principal` called the exported tool `name` successfully: learn from it if the finder had shown it."""
        if self.prior is not None:
            self.prior.called((principal.issuer, principal.subject), name)

    async def _announce_ready(self, index: ToolIndex) -> None:
        started = anyio.current_time()
        await index.wait_embedded()
        seconds = round(anyio.current_time() - started, 2)
        logger.info("finder.ready", extra={"tools": index.size, "mode": "hybrid", "seconds": seconds})

    def documents(self) -> list[ToolDocument]:
        """The catalog's tools as index documents (with their server's description and tags)."""
        specs = {upstream.name: upstream.spec for upstream in self._pool}
        documents = []
        for entry in self._tools():
            spec = specs.get(entry.upstream)
            description, tags = (spec.description, spec.tags) if spec is not None else ("", ())
            documents.append(ToolDocument.from_tool(entry.item.name, entry.upstream, entry.item, description, tags))
        return documents

    async def find(self, principal: Principal, arguments: FindTools) -> dict[str, Any]:
        """The best tools for the query among those `principal` may call."""
        self._wanted.set()
        with anyio.fail_after(60):
            await self._opened.wait()
        index = self._index
        assert index is not None
        allowed = {entry.item.name: entry for entry in self._visible(principal)}
        result = await learned_search(
            index,
            self.prior,
            (principal.issuer, principal.subject),
            arguments.query,
            allowed=allowed.keys(),
            top_k=arguments.top_n_tools or arguments.top_k,
            servers=arguments.servers,
            tags=arguments.tags,
        )
        states = {upstream.name: upstream.state for upstream in self._pool}
        return {
            "mode": result.mode,
            "note": result.note,
            "tools": [
                {
                    "name": hit.name,
                    "server": hit.server,
                    "description": hit.description,
                    "input_schema": hit.input_schema,
                    "score": round(hit.score, 4),
                    "callable": states.get(hit.server) in _CALLABLE,
                }
                for hit in result.hits
            ],
        }

    def tools(
        self,
        describe: Callable[[Principal, DescribeTool], Awaitable[dict[str, Any]]],
        call: Callable[[Principal, CallTool], Awaitable[Any]],
    ) -> list[AdminTool]:
        """The finder and the two discovery-mode companions, as gateway tools of server `mcpgw`."""

        async def call_and_learn(principal: Principal, arguments: CallTool) -> Any:
            result = await call(principal, arguments)
            if isinstance(result, types.CallToolResult) and not result.is_error:
                self.called(principal, arguments.name)
            return result

        return [
            AdminTool(
                FINDER,
                "Find the tools that can do what you describe, among every tool you may call. "
                "Returns names, descriptions and input schemas, best first.",
                FindTools,
                None,
                self.find,
            ),
            AdminTool(DESCRIBE, "Show a tool's description and input schema.", DescribeTool, None, describe),
            AdminTool(CALL, "Call any tool you may call, by its exported name.", CallTool, None, call_and_learn),
        ]
