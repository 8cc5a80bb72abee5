"""REST failures as MCP errors: a failed call names the upstream, the operation and the HTTP status.

A REST service answers 4xx and 5xx, HTML error pages, or nothing at all; the caller gets a tool
(or resource) error saying which service, which operation and what happened, never a gateway
error. fastmcp words a failed call its own way ("Error calling tool ..."), keeping the HTTP error
as the cause: that cause is what is described here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import httpx2
import mcp_types as types
from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.resources import ResourceResult
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools import Tool, ToolResult


class RestErrors(Middleware):
    """A REST call's failure becomes a tool (or resource) error naming the upstream, the operation and the status.

    The call has `deadline` seconds (a little less than the upstream's timeout), so the caller hears
    which operation timed out rather than the gateway's own timeout. Before each `tools/list`,
    `before_listing` re-reads the spec, so a refresh (or a health probe) sees a changed spec.
    """

    def __init__(
        self,
        upstream: str,
        labels: Callable[[], dict[str, str]],
        deadline: float,
        before_listing: Callable[[], Awaitable[None]],
    ) -> None:
        self._upstream = upstream
        self._labels = labels
        self._deadline = deadline
        self._before_listing = before_listing

    async def on_list_tools(
        self, context: MiddlewareContext[types.ListToolsRequest], call_next: CallNext[types.ListToolsRequest, Any]
    ) -> Sequence[Tool]:
        await self._before_listing()
        listed: Sequence[Tool] = await call_next(context)
        return listed

    async def on_call_tool(
        self,
        context: MiddlewareContext[types.CallToolRequestParams],
        call_next: CallNext[types.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        name = context.message.name
        try:
            with anyio.fail_after(self._deadline):
                return await call_next(context)
        except (TimeoutError, httpx2.HTTPError) as error:
            raise ToolError(self._describe(name, error)) from None
        except ToolError as error:
            if isinstance(cause := error.__cause__, httpx2.HTTPError):  # fastmcp's wording of a REST failure
                raise ToolError(self._describe(name, cause)) from None
            raise

    async def on_read_resource(
        self,
        context: MiddlewareContext[types.ReadResourceRequestParams],
        call_next: CallNext[types.ReadResourceRequestParams, ResourceResult],
    ) -> ResourceResult:
        name = str(context.message.uri).removeprefix("resource://").split("/", 1)[0]
        try:
            with anyio.fail_after(self._deadline):
                return await call_next(context)
        except (TimeoutError, httpx2.HTTPError) as error:
            raise ResourceError(self._describe(name, error)) from None
        except ResourceError as error:
            if isinstance(cause := error.__cause__, httpx2.HTTPError):
                raise ResourceError(self._describe(name, cause)) from None
            raise

    def _describe(self, name: str, error: Exception) -> str:
        operation = self._labels().get(name, name)
        where = f"REST service '{self._upstream}'"
        if isinstance(error, httpx2.HTTPStatusError):
            response = error.response
            detail = str(error).partition(" - ")[2]
            answer = f"{where} answered {operation} with HTTP {response.status_code} {response.reason_phrase}"
            return f"{answer}: {detail}" if detail else answer
        if isinstance(error, TimeoutError | httpx2.TimeoutException):
            return f"{where} did not answer {operation} within {self._deadline:g} s"
        reason = str(error) or type(error).__name__
        return f"{where} could not be reached for {operation}: {reason}"
