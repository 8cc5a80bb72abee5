"""One upstream MCP server: a single long-lived client session shared by every caller.

`Upstream.run()` owns the connection. It connects (in whichever protocol era the server
speaks), lists the server's tools, then keeps the session until it breaks, re-listing on
`list_changed` and probing liveness every `health_interval`. When the connection is lost it
reconnects with exponential backoff and jitter. Requests from callers go through the shared
session concurrently (JSON-RPC multiplexes them), each bounded by the upstream's timeout.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from aggregator.config import SseUpstream, StdioUpstream, StreamableHttpUpstream
from aggregator.errors import (
    UpstreamProtocolError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from aggregator.upstreams.credentials import current_tool
from aggregator.upstreams.transports import open_transport

logger = logging.getLogger(__name__)

_MAX_PAGES = 1000
# What a broken connection looks like from the SDK and the HTTP/stdio layers under it.
_CONNECTION_ERRORS = (
    OSError,
    httpx2.HTTPError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


class UpstreamState(StrEnum):
    """Where an upstream's connection stands."""

    CONNECTING = "connecting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Timings:
    """How patient the gateway is with upstreams (from `Settings`)."""

    connect_timeout: float
    health_interval: float
    backoff_initial: float
    backoff_max: float


class Upstream:
    """A registered upstream server and its shared client session."""

    def __init__(
        self,
        name: str,
        spec: StdioUpstream | StreamableHttpUpstream | SseUpstream,
        timings: Timings,
        on_change: Callable[[Upstream], None],
        auth: httpx2.Auth | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self._auth = auth
        self._timings = timings
        self._on_change = on_change
        self.state = UpstreamState.CONNECTING if spec.enabled else UpstreamState.DISABLED
        self.last_error: str | None = None
        self.protocol_version: str | None = None
        self.tools: tuple[types.Tool, ...] = ()
        self._client: Client | None = None
        self._wakeup = anyio.Event()
        self._lost: str | None = None

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, {self.state})"

    async def run(self) -> None:
        """Keep a session to the upstream open for as long as the gateway runs."""
        if not self.spec.enabled:
            return
        failures = 0
        while True:
            try:
                await self._connect_and_serve()
                failures = 0
            except TimeoutError:
                self._set_unhealthy(f"no answer within {self._timings.connect_timeout:g} s while connecting")
            except Exception as error:  # per-task top level: any failure means reconnect later
                self._set_unhealthy(_describe(error))
                if not isinstance(_leaf(error), (MCPError, ValidationError, *_CONNECTION_ERRORS)):
                    logger.exception("upstream.unexpected_error", extra={"upstream": self.name})
            delay = _backoff(failures, self._timings.backoff_initial, self._timings.backoff_max)
            failures += 1
            logger.info(
                "upstream.retry",
                extra={"upstream": self.name, "in_seconds": round(delay, 2), "error": self.last_error},
            )
            await anyio.sleep(delay)

    async def _connect_and_serve(self) -> None:
        self._lost = None
        self._wakeup = anyio.Event()
        client = Client(
            open_transport(self.spec, self._timings.connect_timeout, self._auth),
            mode="auto",
            message_handler=self._on_message,
            client_info=types.Implementation(name="mcp-aggregator", version="0.1.0"),
            cache=None,
        )
        # One scope around the whole session: its deadline bounds the handshake and first listing,
        # then is lifted, so the client's own task groups nest inside it as anyio requires.
        with anyio.CancelScope(deadline=anyio.current_time() + self._timings.connect_timeout) as connecting:
            try:
                async with client:
                    tools = await self._list_tools(client)
                    connecting.deadline = float("inf")
                    self._client = client
                    self.protocol_version = client.protocol_version
                    self.tools = tools
                    self.state = UpstreamState.HEALTHY
                    self.last_error = None
                    logger.info(
                        "upstream.connected",
                        extra={"upstream": self.name, "era": self.protocol_version, "tools": len(tools)},
                    )
                    self._on_change(self)
                    await self._serve(client)
            finally:
                self._client = None
        if connecting.cancelled_caught:
            raise TimeoutError

    async def _serve(self, client: Client) -> None:
        """Wait for changes; re-list on `list_changed` and on every health interval; return when lost."""
        while self._lost is None:
            with anyio.move_on_after(self._timings.health_interval):
                await self._wakeup.wait()
            self._wakeup = anyio.Event()
            if self._lost is not None:
                break
            with anyio.fail_after(self.spec.timeout):
                tools = await self._list_tools(client)
            if tools != self.tools:
                self.tools = tools
                logger.info("upstream.tools_changed", extra={"upstream": self.name, "tools": len(tools)})
                self._on_change(self)
        raise anyio.BrokenResourceError(self._lost)

    async def _list_tools(self, client: Client) -> tuple[types.Tool, ...]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            page = await client.session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None or cursor in seen:
                break
            seen.add(cursor)
        return tuple(tools)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            self._mark_lost(_describe(message))
        elif isinstance(message, types.ToolListChangedNotification):
            self._wakeup.set()

    def _mark_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
            self._wakeup.set()

    def _set_unhealthy(self, reason: str) -> None:
        changed = self.state is not UpstreamState.UNHEALTHY or self.last_error != reason
        self.state = UpstreamState.UNHEALTHY
        self.last_error = reason
        if changed:
            logger.warning("upstream.unhealthy", extra={"upstream": self.name, "error": reason})
            self._on_change(self)

    async def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any] | None,
        progress: ProgressFnT | None = None,
    ) -> types.CallToolResult:
        """Call `tool` (its upstream name) through the shared session; the result passes through unchanged."""
        client = self._client
        if client is None:
            raise UpstreamUnavailableError(self.name, self.last_error or "still connecting")
        request = types.CallToolRequest(params=types.CallToolRequestParams(name=tool, arguments=arguments))
        current_tool.set(tool)
        try:
            with anyio.fail_after(self.spec.timeout):
                return await client.session.send_request(request, types.CallToolResult, progress_callback=progress)
        except TimeoutError:
            raise UpstreamTimeoutError(self.name, f"tools/call '{tool}'", self.spec.timeout) from None
        except MCPError as error:
            if error.code == types.CONNECTION_CLOSED:
                self._mark_lost(error.message)
                raise UpstreamUnavailableError(self.name, error.message) from None
            raise UpstreamRejectedError(self.name, error.code, error.message, error.data) from None
        except ValidationError:
            raise UpstreamProtocolError(self.name, f"tools/call '{tool}'") from None
        except _CONNECTION_ERRORS as error:
            reason = _describe(error)
            self._mark_lost(reason)
            raise UpstreamUnavailableError(self.name, reason) from None


def _backoff(failures: int, initial: float, maximum: float) -> float:
    """Exponential backoff with equal jitter: half the delay is fixed, half random."""
    delay = min(maximum, initial * 2**failures)
    return float(delay / 2 + random.uniform(0, delay / 2))


def _leaf(error: BaseException) -> BaseException:
    """The first real exception inside (possibly nested) exception groups from transport task groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _describe(error: BaseException) -> str:
    error = _leaf(error)
    if isinstance(error, ValidationError):
        return "sent a response that is not valid MCP"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
