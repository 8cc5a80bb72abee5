"""One upstream's lean route: its lean transport, wired to the upstream's lifecycle and request path.

`Upstream` owns one `LeanRoute` (`upstream.lean`). The route taps the SDK client's connection as
it is opened (the session id an HTTP upstream hands out, or a stdio upstream's pipe), holds a
lean session while the SDK client is connected, and sends `tools/call` through a `RequestPath`
that shares the upstream's circuit breaker and lifecycle hooks, so the outcome of a lean call is
judged and reported exactly as an SDK call's is. The lean transport serves the upstreams the
operator configured over streamable HTTP or stdio; SSE upstreams and caller-registered ones
(whose connections need their address checks) have none (`available` is false).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import httpx2
import mcp_types as types
from mcp import Client

from aggregator.registry.models import AnyUpstream, StdioUpstream, StreamableHttpUpstream
from aggregator.sdk import TransportStreams
from aggregator.upstreams.credentials import current_tool
from aggregator.upstreams.lean import InputSchemas, LeanClient, LeanSession, NotSent
from aggregator.upstreams.lean_http import LeanHttp, Notify, SessionTap
from aggregator.upstreams.lean_stdio import LeanPipe
from aggregator.upstreams.requests import TOOL_RESULT, RequestPath
from aggregator.upstreams.state import Timings

ToolResult = types.CallToolResult | types.InputRequiredResult


class LeanRoute:
    """The lean transport of one upstream (see the module docstring)."""

    def __init__(
        self,
        spec: AnyUpstream,
        auth: httpx2.Auth | None,
        timings: Timings,
        requests: RequestPath,
        sdk_requests: RequestPath,
        notify: Notify,
    ) -> None:
        self._requests = requests
        self._sdk_requests = sdk_requests
        self._tap: SessionTap | None = None
        self._http: LeanHttp | None = None
        self._pipe = LeanPipe() if isinstance(spec, StdioUpstream) else None
        if isinstance(spec, StreamableHttpUpstream) and not spec.registered_by:
            self._tap = SessionTap(auth)
            limits = timings.connect_timeout, timings.max_result_bytes
            self._http = LeanHttp(spec.url, dict(spec.headers), self._tap, *limits, notify)

    @property
    def available(self) -> bool:
        """Whether this upstream has a lean transport (`call_tool` may be used)."""
        return self._http is not None or self._pipe is not None

    def auth(self, auth: httpx2.Auth | None) -> httpx2.Auth | None:
        """The auth for the SDK client's HTTP connection: `auth`, tapped for the session id where lean."""
        return self._tap or auth

    def transport(
        self, transport: AbstractAsyncContextManager[TransportStreams]
    ) -> AbstractAsyncContextManager[TransportStreams]:
        """The SDK client's transport, its stdio pipe shared with the lean requests where lean."""
        return self._pipe.tapped(transport) if self._pipe is not None else transport

    def connected(self, client: Client, tools: Callable[[], tuple[types.Tool, ...]]) -> None:
        """The SDK client is connected: lean requests join its session, at its protocol version."""
        exchange: Any = self._http.exchange if self._http else self._pipe.exchange if self._pipe else None
        if exchange is not None and client.protocol_version is not None:
            session = LeanSession(exchange, client.protocol_version, InputSchemas(tools))
            self._requests.client = cast(Client, LeanClient(session))  # `RequestPath` reads only `.session`

    async def disconnected(self) -> None:
        """The SDK client's session ended: no lean request until the next one, idle connections closed."""
        self._requests.client = None
        if self._http is not None:
            await self._http.aclose()

    async def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any] | None,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
    ) -> ToolResult:
        """`Upstream.call_tool` through the lean transport, for the current `Caller`.

        A request the lean transport could not deliver at all is sent the SDK way, so a failure to
        reach the upstream reads exactly as it does today.
        """
        current_tool.set(tool)
        if input_responses is None and request_state is None:
            # Values already checked (the caller's validated params, the catalog's name): not validated again.
            params = types.CallToolRequestParams.model_construct(name=tool, arguments=arguments)
            request = types.CallToolRequest.model_construct(params=params)
        else:
            params = types.CallToolRequestParams(
                name=tool, arguments=arguments, input_responses=input_responses, request_state=request_state
            )
            request = types.CallToolRequest(params=params)
        try:
            return await self._requests.send(f"tools/call '{tool}'", request, TOOL_RESULT)
        except NotSent:
            return await self._sdk_requests.send(f"tools/call '{tool}'", request, TOOL_RESULT)
