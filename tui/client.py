"""The console's MCP client of the gateway: its admin tools and lists, typed.

`GatewayClient` wraps a session opened by a `tui.target.Target`: every call has a timeout, answers
are parsed into `tui.models`, and failures become one of the `tui.errors` (`Refused`,
`Unreachable`; the target turns a refused token into `TokenRejected`). It also follows the
gateway's `gateway://health` resource, so the console learns of changes without polling for them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from tui.errors import ConsoleError, Refused, Unreachable
from tui.models import (
    ACTIVITY,
    APPROVE,
    FINDER,
    HEALTH_URI,
    HELD,
    LIST,
    REFRESH,
    REGISTER,
    REJECT,
    REMOVE,
    TOGGLE,
    Abilities,
    Activity,
    HeldTool,
    SearchResult,
    ServerContents,
    Service,
    Snapshot,
    ToolOutcome,
)
from tui.search import finder_arguments, finder_matches, local_matches
from tui.target import REQUEST_TIMEOUT

ACTIVITY_LIMIT = 200
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx2.HTTPError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


def is_connection_failure(error: BaseException) -> bool:
    """Whether `error` (or every error of a group) means the session with the gateway failed.

    MCP errors count too: a gateway (or a proxy in front of it) answering the session's own
    requests with HTTP errors is a failed session, not a bug of the console.
    """
    if isinstance(error, BaseExceptionGroup):
        return all(is_connection_failure(inner) for inner in error.exceptions)
    return isinstance(error, (ConsoleError, MCPError, TimeoutError, SubscriptionLost, *TRANSPORT_ERRORS))


def describe_failure(error: BaseException) -> str:
    """A short sentence about why the connection failed (never a token)."""
    if isinstance(error, BaseExceptionGroup):
        return describe_failure(error.exceptions[0])
    if isinstance(error, ConsoleError):
        return str(error).rstrip(".")
    if isinstance(error, httpx2.HTTPStatusError):
        return f"the gateway answered HTTP {error.response.status_code}"
    if isinstance(error, MCPError):
        if error.code == types.CONNECTION_CLOSED:
            return "the connection to the gateway was lost"
        return f"the gateway failed the session ({error.message})"
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
            raise Refused(_text(result) or f"{tool} failed.")
        return dict(result.structured_content or {})

    async def try_tool(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Call any tool as the operator and keep its whole answer, an error result included."""
        try:
            with anyio.fail_after(self._timeout):
                result = await self._session.call_tool(tool, arguments)
        except MCPError as error:
            if error.code == types.CONNECTION_CLOSED:
                raise Unreachable("The connection to the gateway was lost.") from error
            raise Refused(error.message) from error
        except TimeoutError:
            raise Unreachable(f"The gateway did not answer {tool} within {self._timeout:g} s.") from None
        structured = None
        if result.structured_content is not None:
            structured = json.dumps(result.structured_content, indent=2, ensure_ascii=False)
        return ToolOutcome(tool, bool(result.is_error), _text(result), structured)

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
        activity, activity_error = await self.activity(abilities)
        held, held_error = await self.held(abilities)
        return Snapshot(services, tools, registry_error, activity, activity_error, abilities, held, held_error)

    async def activity(self, abilities: Abilities) -> tuple[Activity | None, str | None]:
        """The activity tab's data, or why there is none."""
        if (reason := abilities.reason(ACTIVITY)) is not None:
            return None, reason
        try:
            return Activity.from_json(await self.call(ACTIVITY, {"limit": ACTIVITY_LIMIT})), None
        except Refused as error:
            return None, str(error)

    async def held(self, abilities: Abilities) -> tuple[tuple[HeldTool, ...], str | None]:
        """The held tool definitions this token may see, or why there are none to show."""
        if (reason := abilities.reason(HELD)) is not None:
            return (), reason
        try:
            answer = await self.call(HELD)
        except Refused as error:
            return (), str(error)
        return tuple(HeldTool.from_json(item) for item in answer.get("held") or () if isinstance(item, dict)), None

    async def decide(self, held: HeldTool, approve: bool) -> None:
        """Approve or reject `held`: its fingerprint goes along, so a definition changed since is not decided."""
        arguments = {"service_name": held.server, "tool_name": held.tool, "fingerprint": held.fingerprint}
        await self.call(APPROVE if approve else REJECT, arguments)

    async def follow_health(self, changed: Callable[[], None], following: Callable[[], None]) -> None:
        """Call `changed` whenever a server's health or the tool list changes; until cancelled.

        `following` is called once the gateway has agreed. Returns at once when it does not offer
        `gateway://health` to this token (the console then polls). On 2026-07-28 this is one
        `subscriptions/listen` stream; on 2025-11-25 a `resources/subscribe`, whose notifications
        reach the session's message handler (the link's), so this only waits.
        """
        try:
            resources = await self._pages(self._session.list_resources, "resources")
            if not any(str(resource.uri) == HEALTH_URI for resource in resources):
                return
            if self.era not in MODERN_PROTOCOL_VERSIONS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # resources/subscribe is deprecated only for 2026-07-28
                    await self._session.subscribe_resource(HEALTH_URI)
                following()
                await anyio.sleep_forever()
            async with self._session.listen(tools_list_changed=True, resource_subscriptions=[HEALTH_URI]) as events:
                if HEALTH_URI not in (events.honored.resource_subscriptions or ()):
                    return
                following()
                async for _ in events:
                    changed()
        except (Refused, MCPError, ListenNotSupportedError, SubscriptionLost):
            return  # no (more) notifications: the link polls instead

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


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))
