"""The console's MCP client of the gateway: its admin tools and lists, typed.

A `Target` opens an MCP `Client` session (over HTTP with the operator's bearer token; tests may
open one to an in-process server instead). `GatewayClient` wraps a session: every call has a
timeout, answers are parsed into `tui.models`, and failures become one of two errors:

    ConsoleError        what the console reports to the operator
     ├── Refused        the gateway answered with an error; the message is the gateway's text
     └── Unreachable    no answer: the connection is down, was lost, or the call timed out
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from tui.models import (
    ACTIVITY,
    FINDER,
    LIST,
    REFRESH,
    REGISTER,
    REMOVE,
    TOGGLE,
    Abilities,
    Activity,
    SearchResult,
    ServerContents,
    Service,
    Snapshot,
)
from tui.search import finder_arguments, finder_matches, local_matches

CLIENT_INFO = types.Implementation(name="mcp-aggregator-tui", version="0.1.0")
REQUEST_TIMEOUT = 30.0
ACTIVITY_LIMIT = 200
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx2.HTTPError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


class ConsoleError(Exception):
    """Something the console could not do; the message is a sentence for the operator."""


class Refused(ConsoleError):
    """Raised when the gateway answers a request with an error (an MCP error or an error result)."""


class Unreachable(ConsoleError):
    """Raised when the gateway does not answer: not connected, connection lost, or timed out."""


class Target(Protocol):
    """Where the gateway is, and how to open an MCP session to it."""

    @property
    def label(self) -> str: ...

    def open(self) -> AbstractAsyncContextManager[Client]: ...


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """The gateway's streamable-HTTP endpoint, called with the operator's bearer token (if any)."""

    url: str
    token: str | None = None

    @property
    def label(self) -> str:
        return self.url

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(REQUEST_TIMEOUT, connect=5.0)) as http,
            _session(self.url, http) as client,
        ):
            yield client


def _session(url: str, http: httpx2.AsyncClient) -> Client:
    # No response cache: the console polls to see changes, a cached list would hide them.
    return Client(streamable_http_client(url, http_client=http), cache=None, client_info=CLIENT_INFO)


def is_transport_failure(error: BaseException) -> bool:
    """Whether `error` (or every error of a group) means the connection to the gateway failed."""
    if isinstance(error, BaseExceptionGroup):
        return all(is_transport_failure(inner) for inner in error.exceptions)
    if isinstance(error, MCPError):
        return error.code == types.CONNECTION_CLOSED
    return isinstance(error, (Unreachable, TimeoutError, *TRANSPORT_ERRORS))


def describe_failure(error: BaseException) -> str:
    """A short sentence about why the connection failed (never a token)."""
    if isinstance(error, BaseExceptionGroup):
        return describe_failure(error.exceptions[0])
    if isinstance(error, httpx2.HTTPStatusError):
        status = error.response.status_code
        if status in (401, 403):
            return f"the gateway refused the token (HTTP {status})"
        return f"the gateway answered HTTP {status}"
    if isinstance(error, MCPError):
        return "the connection to the gateway was lost"
    if isinstance(error, TimeoutError):
        return "the gateway did not answer in time"
    return str(error) or type(error).__name__


class GatewayClient:
    """One open session to the gateway, as the console uses it."""

    def __init__(self, session: Client, timeout: float = REQUEST_TIMEOUT) -> None:
        self._session = session
        self._timeout = timeout

    @property
    def era(self) -> str:
        """The protocol revision the session speaks."""
        return str(self._session.protocol_version or "")

    async def list_tools(self) -> tuple[types.Tool, ...]:
        return tuple(await self._pages(self._session.list_tools, "tools"))

    async def call(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call one of the gateway's tools; its structured answer, or `Refused` with the gateway's text."""
        try:
            with anyio.fail_after(self._timeout):
                result = await self._session.call_tool(tool, arguments or {})
        except MCPError as error:
            if error.code == types.CONNECTION_CLOSED:
                raise Unreachable("The connection to the gateway was lost.") from error
            raise Refused(error.message) from error
        except TimeoutError:
            raise Unreachable(f"The gateway did not answer {tool} within {self._timeout:g} s.") from None
        if result.is_error:
            text = " ".join(block.text for block in result.content if isinstance(block, types.TextContent))
            raise Refused(text or f"{tool} failed.")
        return dict(result.structured_content or {})

    async def snapshot(self) -> Snapshot:
        """Everything the console shows that changes by itself: servers, tools, activity."""
        tools = await self.list_tools()
        abilities = Abilities(frozenset(tool.name for tool in tools))
        services: tuple[Service, ...] = ()
        registry_error = None
        if abilities.allows(LIST):
            listing = await self.call(LIST)
            services = tuple(Service.from_json(item) for item in listing.get("services") or ())
            registry_error = listing.get("registry_error")
        activity, activity_error = None, abilities.reason(ACTIVITY)
        if activity_error is None:
            try:
                activity = Activity.from_json(await self.call(ACTIVITY, {"limit": ACTIVITY_LIMIT}))
            except Refused as error:
                activity_error = str(error)
        return Snapshot(services, tools, registry_error, activity, activity_error, abilities)

    async def toggle(self, name: str, enabled: bool) -> None:
        await self.call(TOGGLE, {"service_name": name, "enabled": enabled})

    async def refresh(self, name: str) -> Service:
        return Service.from_json(await self.call(REFRESH, {"service_name": name}))

    async def remove(self, name: str) -> None:
        await self.call(REMOVE, {"service_name": name})

    async def register(self, arguments: dict[str, Any]) -> None:
        await self.call(REGISTER, arguments)

    async def contents(self, server: str) -> ServerContents:
        """What `server` exports through the gateway: names under `<server>__`, URIs under `<server>+`."""
        tools = await self.list_tools()
        capabilities = self._session.server_capabilities
        resources: list[types.Resource] = []
        templates: list[types.ResourceTemplate] = []
        prompts: list[types.Prompt] = []
        if capabilities is None or capabilities.resources is not None:
            resources = await self._pages(self._session.list_resources, "resources")
            templates = await self._pages(self._session.list_resource_templates, "resource_templates")
        if capabilities is None or capabilities.prompts is not None:
            prompts = await self._pages(self._session.list_prompts, "prompts")
        name_prefix, uri_prefix = f"{server}__", f"{server}+"
        return ServerContents(
            tools=tuple(t for t in tools if t.name.startswith(name_prefix)),
            resources=tuple(r for r in resources if str(r.uri).startswith(uri_prefix)),
            templates=tuple(t for t in templates if t.uri_template.startswith(uri_prefix)),
            prompts=tuple(p for p in prompts if p.name.startswith(name_prefix)),
        )

    async def search(self, query: str) -> SearchResult:
        """The gateway's finder when the token has it, else a local match over tools/list (and why)."""
        tools = await self.list_tools()
        finder = next((tool for tool in tools if tool.name == FINDER), None)
        if finder is None:
            note = f"{FINDER} is not on this gateway: local fuzzy match over tools/list."
        else:
            try:
                answer = await self.call(FINDER, finder_arguments(finder, query))
                return SearchResult(query, finder_matches(answer, tools), FINDER)
            except Refused as error:
                note = f"{FINDER} failed ({error}): local fuzzy match over tools/list."
        return SearchResult(query, local_matches(query, tools), "local", note)

    async def _pages(self, method: Any, field: str) -> list[Any]:
        """Every page of a list method (bounded in time as a whole)."""
        items: list[Any] = []
        cursor: str | None = None
        try:
            with anyio.fail_after(self._timeout):
                while True:
                    page = await method(cursor=cursor)
                    items.extend(getattr(page, field))
                    cursor = page.next_cursor
                    if not cursor:
                        return items
        except TimeoutError:
            raise Unreachable(f"The gateway did not list its {field} within {self._timeout:g} s.") from None
        except MCPError as error:
            if error.code == types.CONNECTION_CLOSED:
                raise Unreachable("The connection to the gateway was lost.") from error
            raise Refused(error.message) from error
