"""The agent's side of the gateway: find tools (dynamic discovery) and call them, through the `mcp` SDK.

`find` asks the gateway's `intelligent_tool_finder` for the tools that fit a query. A gateway that
does not offer the finder (yet) answers "Unknown tool"; the agent then says so once and falls back
to `tools/list`, ranking the listed tools by word overlap with the query, and hands the model the
same shape of answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel, Field, ValidationError

from examples.agent.conversation import ToolSpec
from examples.agent.errors import AgentError

FINDER = "intelligent_tool_finder"
FINDER_SPEC = ToolSpec(
    name=FINDER,
    description=(
        "Find the gateway's tools for a need. Describe the need in plain words (e.g. 'weather forecast "
        "for a city'); the answer lists up to top_k tools with their names, descriptions and input "
        "schemas, best first. Call this first, then call the tools it returns by name."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What the tool should do, in plain words."},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
        },
        "required": ["query"],
    },
)
FALLBACK_NOTE = "The gateway has no intelligent_tool_finder; these tools come from tools/list, ranked by the agent."
REQUEST_TIMEOUT = 60.0
_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = frozenset(_WORD.findall("a an and are by can for from how i in is it me my of on or the to what with"))


class FoundTool(BaseModel):
    """One tool in the finder's answer."""

    name: str
    server: str = ""
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    score: float = 0.0
    callable: bool = True

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description or self.name, self.input_schema)


class Discovery(BaseModel):
    """The finder's answer: `{"mode": "hybrid" | "full-text" | "tools/list", "note": ..., "tools": [...]}`."""

    mode: str
    note: str | None = None
    tools: list[FoundTool]


class ToolOutcome(BaseModel):
    """What a tool call returned: structured content (else the text) and whether it is an error."""

    content: Any
    is_error: bool = False


class GatewayTools:
    """Finds and calls the gateway's tools over one connected `mcp.Client`."""

    def __init__(self, client: Client, notify: Callable[[str], None]) -> None:
        self._client = client
        self._notify = notify
        self._finder_missing = False
        self._listed: list[types.Tool] | None = None

    async def find(self, query: str, top_k: int = 5) -> Discovery:
        """The tools that fit `query`, best first: from the gateway's finder, else from tools/list."""
        if not self._finder_missing:
            try:
                result = await self._client.call_tool(FINDER, {"query": query, "top_k": top_k})
            except MCPError as error:
                if not _unknown_finder(error.message):
                    raise AgentError(f"{FINDER} failed: {error.message}") from None
                result = None
            if result is not None and not (result.is_error and _unknown_finder(str(_content(result)))):
                return _discovery(result)
            self._finder_missing = True
            self._notify(f"the gateway offers no {FINDER}; falling back to tools/list (ranked by the agent)")
        return await self._ranked_listing(query, top_k)

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Call `name` through the gateway; a gateway or tool error becomes an error outcome for the model."""
        try:
            result = await self._client.call_tool(name, arguments)
        except MCPError as error:
            return ToolOutcome(content={"error": error.message, "code": error.code}, is_error=True)
        return ToolOutcome(content=_content(result), is_error=result.is_error)

    async def _ranked_listing(self, query: str, top_k: int) -> Discovery:
        if self._listed is None:
            self._listed = []
            cursor: str | None = None
            while True:
                page = await self._client.list_tools(cursor=cursor)
                self._listed.extend(page.tools)
                if not (cursor := page.next_cursor):
                    break
        wanted = set(_WORD.findall(query.lower())) - _STOP_WORDS
        scored = []
        for tool in self._listed:
            words = set(_WORD.findall(f"{tool.name.replace('_', ' ')} {tool.description or ''}".lower()))
            overlap = len(wanted & words) / len(wanted) if wanted else 0.0
            if overlap > 0 and tool.name != FINDER:
                scored.append((overlap, tool))
        scored.sort(key=lambda pair: (-pair[0], pair[1].name))
        found = [
            FoundTool(
                name=tool.name,
                description=tool.description or "",
                input_schema=dict(tool.input_schema),
                score=round(score, 3),
            )
            for score, tool in scored[:top_k]
        ]
        return Discovery(mode="tools/list", note=FALLBACK_NOTE, tools=found)


@asynccontextmanager
async def connect(url: str, token: str | None, notify: Callable[[str], None]) -> AsyncIterator[GatewayTools]:
    """A session with the gateway at `url`, as the bearer of `token`; a refused token is an `AgentError`."""
    refusals: list[str] = []

    async def note_refusal(response: httpx2.Response) -> None:
        if response.status_code in (401, 403):
            await response.aread()
            try:
                reason = response.json().get("error_description", "")
            except ValueError:
                reason = ""
            refusals.append(f"HTTP {response.status_code}" + (f": {reason}" if reason else ""))

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    hooks = {"response": [note_refusal]}
    try:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=REQUEST_TIMEOUT, event_hooks=hooks) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            yield GatewayTools(client, notify)
    except (MCPError, httpx2.HTTPError, ExceptionGroup) as error:  # the SDK's task groups wrap what the body raised
        if refusals:
            raise AgentError(f"the gateway refused the agent's credentials ({refusals[0]})") from None
        if (unreachable := _first(error, httpx2.TransportError)) is not None:
            raise AgentError(f"cannot reach the gateway at {url}: {unreachable}") from None
        raise _first(error, AgentError) or _first(error, MCPError) or error from None


def _first(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """`error`, or the first exception of type `kind` inside it when it is an exception group."""
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        return next((found for inner in error.exceptions if (found := _first(inner, kind)) is not None), None)
    return None


def _unknown_finder(message: str) -> bool:
    """Whether an error says the finder does not exist: the gateway answers -32602 "Unknown tool
    'intelligent_tool_finder'. ...", other MCP servers an error result "Unknown tool: ..."."""
    return message.lower().startswith("unknown tool") and FINDER in message


def _discovery(result: types.CallToolResult) -> Discovery:
    if result.is_error:
        raise AgentError(f"{FINDER} failed: {_content(result)}")
    try:
        return Discovery.model_validate(_content(result))
    except ValidationError as error:
        raise AgentError(f"{FINDER} answered in an unexpected shape: {error.errors()[0]['msg']}") from None


def _content(result: types.CallToolResult) -> Any:
    """Structured content when there is some; else the text, parsed as JSON when it is JSON."""
    if result.structured_content is not None:
        return result.structured_content
    text = "".join(block.text for block in result.content if isinstance(block, types.TextContent))
    try:
        return json.loads(text)
    except ValueError:
        return text
