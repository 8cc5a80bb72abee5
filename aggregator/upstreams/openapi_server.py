"""The in-process MCP server of one openapi upstream: fastmcp's OpenAPI tools over the spec as last read.

fastmcp turns each selected operation into a tool (or, by `route_map`, a resource or resource
template) that calls the REST service through the upstream's own HTTP client. The gateway's own
parts: `OperationsProvider` swaps in the operations of a changed spec without ending the session,
`RestErrors` (`openapi_errors`) makes a failed REST call a tool error naming the upstream, the
operation and the HTTP status, and `serve()` runs the server on in-memory streams. fastmcp offers
no public way to serve a server on a given stream pair, so `serve()` is the one place that uses
its private `_mcp_server` and `_lifespan_manager` (as fastmcp's own in-memory client transport does).

This module (and so fastmcp) is imported only when an openapi upstream connects (about 1 s, 25 MB).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp_types as types
from fastmcp import FastMCP
from fastmcp.resources import Resource, ResourceTemplate
from fastmcp.server.providers import Provider
from fastmcp.server.providers.openapi import (
    MCPType,
    OpenAPIProvider,
    OpenAPIResource,
    OpenAPIResourceTemplate,
    OpenAPITool,
    RouteMap,
)
from fastmcp.tools import Tool
from fastmcp.utilities.openapi import HTTPRoute
from fastmcp.utilities.versions import VersionSpec
from mcp.shared.memory import create_client_server_memory_streams
from mcp.shared.message import SessionMessage

from aggregator.errors import UpstreamUnavailableError
from aggregator.registry.models import OpenApiUpstream
from aggregator.registry.openapi import RouteMapEntry
from aggregator.sdk import TransportStreams
from aggregator.upstreams.openapi_errors import RestErrors
from aggregator.upstreams.openapi_spec import Prepared, SpecSource, prepare

logger = logging.getLogger(__name__)

# fastmcp gives its logger a console handler of its own when imported; the gateway's lines go
# through its root handler, one structured event per line (`aggregator.config.logs`).
logging.getLogger("fastmcp").handlers.clear()
logging.getLogger("fastmcp").propagate = True
# fastmcp logs every failed tool call as an ERROR; the gateway's edge already logs each call with its
# outcome, and a REST service's 404 is the caller's answer, not the gateway's error.
logging.getLogger("fastmcp.server.server").addFilter(lambda record: not record.getMessage().startswith("Error calling"))

Announce = Callable[[], Awaitable[None]]
"""Tells the connected client that the tools, resources and templates changed (`list_changed`)."""


@dataclass(frozen=True, slots=True)
class Operations:
    """The MCP side of one version of a spec: fastmcp's provider, and each component's operation."""

    provider: OpenAPIProvider
    labels: dict[str, str]
    """Component name -> `operationId (METHOD /path)`, as errors name the operation."""


def build_operations(prepared: Prepared, route_map: Sequence[RouteMapEntry], http: httpx2.AsyncClient) -> Operations:
    """Parse a prepared document into fastmcp components (CPU-bound: run it in a worker thread).

    Tools carry no output schema: a REST service's answers often stray from its description (fastmcp
    would make such an answer an error), a text answer has no structured content (a caller's client
    would refuse it), and the listing is far smaller (GitHub's 348 operations: 0.7 MB, not 5.1 MB).
    """
    labels: dict[str, str] = {}

    def label(route: HTTPRoute, component: OpenAPITool | OpenAPIResource | OpenAPIResourceTemplate) -> None:
        labels[component.name] = f"{route.operation_id or component.name} ({route.method.upper()} {route.path})"
        if isinstance(component, OpenAPITool):
            component.output_schema = None  # else a text answer fails the caller's check for structured content

    try:
        provider = OpenAPIProvider(
            openapi_spec=prepared.document,
            client=http,
            route_maps=[_route_map(entry) for entry in route_map],
            mcp_component_fn=label,
            mcp_names=prepared.names,
            validate_output=False,
        )
    except ValueError as error:
        raise ValueError(str(error).splitlines()[0]) from None
    return Operations(provider, labels)


def _route_map(entry: RouteMapEntry) -> RouteMap:
    methods: Any = "*" if entry.methods == "*" else list(entry.methods)
    return RouteMap(
        methods=methods, pattern=entry.pattern, tags=set(entry.tags), mcp_type=MCPType[entry.mcp_type.upper()]
    )


class OperationsProvider(Provider):
    """Serves the components of the current `Operations`; a changed spec swaps them in one assignment."""

    def __init__(self, operations: Operations) -> None:
        super().__init__()
        self.current = operations

    async def _list_tools(self) -> Sequence[Tool]:
        return await self.current.provider.list_tools()

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        return await self.current.provider.get_tool(name, version)

    async def _list_resources(self) -> Sequence[Resource]:
        return await self.current.provider.list_resources()

    async def _get_resource(self, uri: str, version: VersionSpec | None = None) -> Resource | None:
        return await self.current.provider.get_resource(uri, version)

    async def _list_resource_templates(self) -> Sequence[ResourceTemplate]:
        return await self.current.provider.list_resource_templates()

    async def _get_resource_template(self, uri: str, version: VersionSpec | None = None) -> ResourceTemplate | None:
        return await self.current.provider.get_resource_template(uri, version)


class OpenApiServer:
    """One upstream's REST service as an MCP server whose operations are those of its spec as last read.

    `refresh()` re-reads the spec and swaps in its operations when it changed; a spec that cannot
    be used then is logged and the last good operations stay (as with a bad edit of servers.yaml).
    """

    def __init__(
        self,
        upstream: str,
        spec: OpenApiUpstream,
        source: SpecSource,
        http: httpx2.AsyncClient,
        deadline: float,
        admit: Callable[[str], Awaitable[None]],
    ) -> None:
        self._upstream = upstream
        self._spec = spec
        self._source = source
        self._http = http
        self._admit = admit
        self._lock = anyio.Lock()
        self._provider: OperationsProvider | None = None
        self._errors = RestErrors(upstream, self._labels, deadline, self._refresh_before_listing)

    async def load(self) -> FastMCP[Any]:
        """Read the spec for the first time (failures raise `UpstreamUnavailableError`); the server to serve."""
        operations = await self._read()
        assert operations is not None  # a first read always returns the document
        self._provider = OperationsProvider(operations)
        return FastMCP(name=self._upstream, providers=[self._provider], middleware=[self._errors])

    async def refresh(self) -> bool:
        """Re-read the spec; whether the operations changed. A spec that cannot be used keeps the last good ones."""
        try:
            operations = await self._read()
        except UpstreamUnavailableError as error:
            logger.warning("openapi.spec_unusable", extra={"upstream": self._upstream, "error": error.cause})
            return False
        if operations is None or self._provider is None:
            return False
        self._provider.current = operations
        return True

    async def _refresh_before_listing(self) -> None:
        await self.refresh()

    async def _read(self) -> Operations | None:
        async with self._lock:
            started = anyio.current_time()
            document = await self._source.read()
            if document is None:
                return None
            prepared = prepare(self._upstream, self._spec, self._source.location, document)
            if prepared.unmatched:
                logger.warning(
                    "openapi.unmatched_selectors",
                    extra={"upstream": self._upstream, "names": list(prepared.unmatched), "hint": "include/exclude"},
                )
            await self._admit(prepared.base_url)
            try:
                operations = await anyio.to_thread.run_sync(
                    build_operations, prepared, self._spec.route_map, self._http
                )
            except ValueError as error:
                raise self._source.unusable(str(error)) from None
            self._http.base_url = prepared.base_url
            logger.info(
                "openapi.spec_loaded",
                extra={
                    "upstream": self._upstream,
                    "operations": len(operations.labels),
                    "seconds": round(anyio.current_time() - started, 3),
                },
            )
            return operations

    def _labels(self) -> dict[str, str]:
        return self._provider.current.labels if self._provider is not None else {}


@asynccontextmanager
async def serve(server: FastMCP[Any]) -> AsyncIterator[tuple[TransportStreams, Announce]]:
    """Run `server` on in-memory streams until the block ends; yield the client's end and `announce`.

    The server's messages are forwarded to the client's read stream, where `announce` may add a
    `list_changed` notification: this server's components change when its spec does, which fastmcp
    itself only announces from inside a request.
    """
    sender, receiver = anyio.create_memory_object_stream[SessionMessage | Exception](16)

    async def forward(from_server: Any) -> None:
        async with sender:
            async for message in from_server:
                await sender.send(message)

    async def announce() -> None:
        for method in ("notifications/tools/list_changed", "notifications/resources/list_changed"):
            note = types.JSONRPCNotification(jsonrpc="2.0", method=method)
            try:
                await sender.send(SessionMessage(note))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # the session is over; the next one lists afresh

    lowlevel = server._mcp_server
    async with (
        create_client_server_memory_streams() as ((client_read, client_write), (server_read, server_write)),
        receiver,
        server._lifespan_manager(),
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(forward, client_read)
        tasks.start_soon(lowlevel.run, server_read, server_write, lowlevel.create_initialization_options())
        try:
            yield (receiver, client_write), announce
        finally:
            tasks.cancel_scope.cancel()
