"""What one upstream offers: its tools, resources, resource templates and prompts, listed to the end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import mcp_types as types
from mcp import Client

_MAX_PAGES = 1000


@dataclass(frozen=True, slots=True)
class Listing:
    """An upstream's capabilities as last listed; empty for kinds it does not offer."""

    tools: tuple[types.Tool, ...] = ()
    resources: tuple[types.Resource, ...] = ()
    templates: tuple[types.ResourceTemplate, ...] = ()
    prompts: tuple[types.Prompt, ...] = ()


async def fetch_listing(client: Client) -> Listing:
    """List every kind the upstream advertises, following pagination cursors to the end."""
    capabilities = client.server_capabilities
    session = client.session
    tools: list[types.Tool] = []
    resources: list[types.Resource] = []
    templates: list[types.ResourceTemplate] = []
    prompts: list[types.Prompt] = []
    if capabilities.tools is not None:
        await _paginate(lambda p: session.list_tools(params=p), lambda page: tools.extend(page.tools))
    if capabilities.resources is not None:
        await _paginate(lambda p: session.list_resources(params=p), lambda page: resources.extend(page.resources))
        await _paginate(
            lambda p: session.list_resource_templates(params=p),
            lambda page: templates.extend(page.resource_templates),
        )
    if capabilities.prompts is not None:
        await _paginate(lambda p: session.list_prompts(params=p), lambda page: prompts.extend(page.prompts))
    return Listing(tuple(tools), tuple(resources), tuple(templates), tuple(prompts))


_PageT = TypeVar(
    "_PageT",
    types.ListToolsResult,
    types.ListResourcesResult,
    types.ListResourceTemplatesResult,
    types.ListPromptsResult,
)


async def _paginate(
    fetch: Callable[[types.PaginatedRequestParams], Awaitable[_PageT]], collect: Callable[[_PageT], None]
) -> None:
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(_MAX_PAGES):
        page = await fetch(types.PaginatedRequestParams(cursor=cursor))
        collect(page)
        cursor = page.next_cursor
        if cursor is None or cursor in seen:
            return
        seen.add(cursor)
