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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.client.subscriptions import SubscriptionLost
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter, ValidationError

from aggregator.errors import (
    UpstreamProtocolError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from aggregator.registry.models import SseUpstream, StdioUpstream, StreamableHttpUpstream
from aggregator.upstreams.credentials import current_tool
from aggregator.upstreams.listing import Listing, fetch_listing
from aggregator.upstreams.relay import (
    relay_elicitation,
    relay_log,
    relay_roots,
    relay_sampling,
    speak_for_the_caller,
)
from aggregator.upstreams.transports import open_transport

logger = logging.getLogger(__name__)

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
    DEGRADED = "degraded"  # connected, but slow (a probe took over half the timeout)
    UNHEALTHY = "unhealthy"
    AUTH_EXPIRED = "auth-expired"  # refused our credential (HTTP 401/403)
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Timings:
    """How patient the gateway is with upstreams (from `Settings`)."""

    connect_timeout: float
    health_interval: float
    backoff_initial: float
    backoff_max: float
    circuit_failures: int = 5
    circuit_cooldown: float = 10.0
    max_result_bytes: int = 8 * 1024 * 1024


class Upstream:
    """A registered upstream server and its shared client session."""

    def __init__(
        self,
        name: str,
        spec: StdioUpstream | StreamableHttpUpstream | SseUpstream,
        timings: Timings,
        on_change: Callable[[Upstream], None],
        auth: httpx2.Auth | None = None,
        on_resource_updated: Callable[[Upstream, str], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self._auth = auth
        self._on_resource_updated = on_resource_updated
        self._followed: dict[str, int] = {}
        self._refollow = anyio.Event()
        self._timings = timings
        self._on_change = on_change
        self.state = UpstreamState.CONNECTING if spec.enabled else UpstreamState.DISABLED
        self.last_error: str | None = None
        self.last_check: float | None = None  # wall-clock time of the last successful listing
        self.latency_ms: float | None = None
        self.protocol_version: str | None = None
        self.listing = Listing()
        self._client: Client | None = None
        self._failures = 0
        self._open_until = 0.0
        self._wakeup = anyio.Event()
        self._lost: str | None = None

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, {self.state})"

    @property
    def tools(self) -> tuple[types.Tool, ...]:
        """The upstream's tools as last listed."""
        return self.listing.tools

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
            open_transport(self.spec, self._timings.connect_timeout, self._auth, self._timings.max_result_bytes),
            mode="auto",
            message_handler=self._on_message,
            sampling_callback=relay_sampling,
            elicitation_callback=relay_elicitation,
            list_roots_callback=relay_roots,
            logging_callback=relay_log,
            log_level="debug",
            client_info=types.Implementation(name="mcp-aggregator", version="0.1.0"),
            cache=None,
        )
        # One scope around the whole session: its deadline bounds the handshake and first listing,
        # then is lifted, so the client's own task groups nest inside it as anyio requires.
        with anyio.CancelScope(deadline=anyio.current_time() + self._timings.connect_timeout) as connecting:
            try:
                async with client:
                    speak_for_the_caller(client)
                    listing = await self._probe(client)
                    connecting.deadline = float("inf")
                    self._client = client
                    self.protocol_version = client.protocol_version
                    self.listing = listing
                    self.last_error = None
                    self._grade()
                    logger.info(
                        "upstream.connected",
                        extra={"upstream": self.name, "era": self.protocol_version, "tools": len(listing.tools)},
                    )
                    self._on_change(self)
                    await self._serve(client)
            finally:
                self._client = None
        if connecting.cancelled_caught:
            raise TimeoutError

    async def _serve(self, client: Client) -> None:
        """Wait for changes; re-list on `list_changed` and on every health interval; return when lost."""
        async with anyio.create_task_group() as tasks:
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS and _advertises_changes(client):
                tasks.start_soon(self._listen, client)
            else:
                for uri in list(self._followed):  # a reconnected 2025-11-25 upstream forgot its subscriptions
                    await self._refollow_upstream(uri, subscribe=True)
            while self._lost is None:
                with anyio.move_on_after(self._timings.health_interval):
                    await self._wakeup.wait()
                self._wakeup = anyio.Event()
                if self._lost is not None:
                    break
                with anyio.fail_after(self.spec.timeout):
                    listing = await self._probe(client)
                self._grade()
                if listing != self.listing:
                    self.listing = listing
                    logger.info("upstream.listing_changed", extra={"upstream": self.name, "tools": len(listing.tools)})
                    self._on_change(self)
            tasks.cancel_scope.cancel()
        raise anyio.BrokenResourceError(self._lost)

    async def _listen(self, client: Client) -> None:
        """2026-07-28 upstreams announce changes only on a `subscriptions/listen` stream.

        The stream names the followed resources, so it is reopened whenever that set changes.
        """
        while True:
            self._refollow = anyio.Event()
            try:
                async with (
                    client.listen(
                        tools_list_changed=True,
                        prompts_list_changed=True,
                        resources_list_changed=True,
                        resource_subscriptions=sorted(self._followed),
                    ) as subscription,
                    anyio.create_task_group() as reopen,
                ):
                    reopen.start_soon(_cancel_when, self._refollow, reopen.cancel_scope)
                    async for event in subscription:
                        if isinstance(event, ResourceUpdated):
                            await self._resource_updated(event.uri)
                        else:
                            self._wakeup.set()
                    reopen.cancel_scope.cancel()
            except Exception as error:  # the task group above wraps what the stream raised in a group
                if not isinstance(_leaf(error), (MCPError, SubscriptionLost, *_CONNECTION_ERRORS)):
                    raise
                logger.info("upstream.listen_ended", extra={"upstream": self.name, "error": _describe(error)})
                self._wakeup.set()  # probe now: if the upstream went away with the stream, reconnect
                return
            if not self._refollow.is_set():
                return  # the upstream closed the stream on purpose

    async def follow(self, uri: str) -> None:
        """Start forwarding updates of the resource `uri` (refcounted across callers)."""
        self._followed[uri] = self._followed.get(uri, 0) + 1
        if self._followed[uri] == 1:
            await self._refollow_upstream(uri, subscribe=True)

    async def unfollow(self, uri: str) -> None:
        """Stop forwarding updates of `uri` once no caller follows it any more."""
        count = self._followed.get(uri, 0) - 1
        if count > 0:
            self._followed[uri] = count
            return
        self._followed.pop(uri, None)
        await self._refollow_upstream(uri, subscribe=False)

    async def _refollow_upstream(self, uri: str, *, subscribe: bool) -> None:
        if self.protocol_version in MODERN_PROTOCOL_VERSIONS:
            self._refollow.set()
            return
        if subscribe:
            await self._request(f"resources/subscribe '{uri}'", _subscribe(uri), TypeAdapter(types.EmptyResult))
        else:
            await self._request(f"resources/unsubscribe '{uri}'", _unsubscribe(uri), TypeAdapter(types.EmptyResult))

    async def _resource_updated(self, uri: str) -> None:
        if self._on_resource_updated is not None and uri in self._followed:
            await self._on_resource_updated(self, uri)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            if isinstance(self.spec, StdioUpstream):
                self._mark_lost(_describe(message))  # the child's pipes broke: the session is gone
            else:
                # Over HTTP one failed request is not a lost session: the probe decides, now.
                logger.info("upstream.request_failed", extra={"upstream": self.name, "error": _describe(message)})
                self._wakeup.set()
        elif isinstance(
            message,
            types.ToolListChangedNotification
            | types.PromptListChangedNotification
            | types.ResourceListChangedNotification,
        ):
            self._wakeup.set()
        elif isinstance(message, types.ResourceUpdatedNotification):
            await self._resource_updated(str(message.params.uri))

    async def _probe(self, client: Client) -> Listing:
        """List everything; the time it takes is the upstream's latency."""
        started = anyio.current_time()
        listing = await fetch_listing(client)
        self.latency_ms = round((anyio.current_time() - started) * 1000, 1)
        self.last_check = time.time()
        return listing

    def _grade(self) -> None:
        slow = self.latency_ms is not None and self.latency_ms > self.spec.timeout * 500
        tripped = anyio.current_time() < self._open_until  # a good probe must not hide an open circuit
        state = UpstreamState.DEGRADED if slow or tripped else UpstreamState.HEALTHY
        if state is not self.state:
            self.state = state
            self._on_change(self)

    async def refresh(self) -> None:
        """Re-list now (admin `refresh_service`); returns once the listing is current."""
        client = self._client
        if client is None:
            raise UpstreamUnavailableError(self.name, self.last_error or "still connecting")
        with anyio.fail_after(self.spec.timeout):
            listing = await self._probe(client)
        self._grade()
        if listing != self.listing:
            self.listing = listing
            self._on_change(self)

    def _failed(self) -> None:
        """Count a failed request; enough in a row open the circuit, so callers fail fast for a while."""
        self._failures += 1
        if self._failures >= self._timings.circuit_failures:
            self._open_until = anyio.current_time() + self._timings.circuit_cooldown
            logger.warning("upstream.circuit_open", extra={"upstream": self.name, "failures": self._failures})
            if self.state is UpstreamState.HEALTHY:
                self.state = UpstreamState.DEGRADED
                self._on_change(self)

    def _mark_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
            self._wakeup.set()

    def _set_unhealthy(self, reason: str) -> None:
        refused = any(f"'{code} " in reason or f" {code} " in reason for code in (401, 403))
        state = UpstreamState.AUTH_EXPIRED if refused else UpstreamState.UNHEALTHY
        changed = self.state is not state or self.last_error != reason
        self.state = state
        self.last_error = reason
        if changed:
            logger.warning("upstream.unhealthy", extra={"upstream": self.name, "error": reason})
            self._on_change(self)

    async def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any] | None,
        progress: ProgressFnT | None = None,
        *,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Call `tool` (its upstream name); the result, or the upstream's request for input, passes through."""
        params = types.CallToolRequestParams(
            name=tool, arguments=arguments, input_responses=input_responses, request_state=request_state
        )
        current_tool.set(tool)
        return await self._request(f"tools/call '{tool}'", types.CallToolRequest(params=params), _TOOL_RESULT, progress)

    async def get_prompt(
        self,
        prompt: str,
        arguments: dict[str, str] | None,
        *,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
    ) -> types.GetPromptResult | types.InputRequiredResult:
        """Get `prompt` (its upstream name) with `arguments`."""
        params = types.GetPromptRequestParams(
            name=prompt, arguments=arguments, input_responses=input_responses, request_state=request_state
        )
        return await self._request(f"prompts/get '{prompt}'", types.GetPromptRequest(params=params), _PROMPT_RESULT)

    async def read_resource(
        self,
        uri: str,
        *,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        """Read the resource at `uri` (the upstream's own URI)."""
        params = types.ReadResourceRequestParams(uri=uri, input_responses=input_responses, request_state=request_state)
        return await self._request(f"resources/read '{uri}'", types.ReadResourceRequest(params=params), _READ_RESULT)

    async def complete(self, params: types.CompleteRequestParams) -> types.CompleteResult:
        """Ask the upstream to complete an argument of one of its prompts or resource templates."""
        request = types.CompleteRequest(params=params)
        return await self._request("completion/complete", request, TypeAdapter(types.CompleteResult))

    async def _request(
        self,
        label: str,
        request: types.ClientRequest,
        result_type: TypeAdapter[_ResultT],
        progress: ProgressFnT | None = None,
    ) -> _ResultT:
        """Send one request through the shared session, bounded by the upstream's timeout."""
        client = self._client
        if client is None:
            raise UpstreamUnavailableError(self.name, self.last_error or "still connecting")
        if (wait := self._open_until - anyio.current_time()) > 0:
            raise UpstreamUnavailableError(
                self.name, f"circuit open after {self._failures} consecutive failures; retrying in {wait:.0f} s"
            )
        try:
            with anyio.fail_after(self.spec.timeout):
                # A union result (result or input request) is validated by a TypeAdapter.
                result = await client.session.send_request(request, result_type, progress_callback=progress)  # type: ignore[type-var]
        except TimeoutError:
            self._failed()
            raise UpstreamTimeoutError(self.name, label, self.spec.timeout) from None
        except MCPError as error:
            if error.code == types.CONNECTION_CLOSED:
                self._failed()
                if isinstance(self.spec, StreamableHttpUpstream) and error.message.startswith("SSE stream"):
                    # One response stream broke, not the session: fail this call only, and probe now.
                    self._wakeup.set()
                    problem = _broken_stream(error.message, self._timings.max_result_bytes)
                    raise UpstreamProtocolError(self.name, label, problem) from None
                self._mark_lost(error.message)
                raise UpstreamUnavailableError(self.name, error.message) from None
            if error.code == types.PARSE_ERROR:  # the SDK's verdict on an answer that is not JSON-RPC
                self._failed()
                raise UpstreamProtocolError(self.name, label) from None
            raise UpstreamRejectedError(self.name, error.code, error.message, error.data) from None
        except ValidationError:
            self._failed()
            raise UpstreamProtocolError(self.name, label) from None
        except _CONNECTION_ERRORS as error:
            self._failed()
            reason = _describe(error)
            self._mark_lost(reason)
            raise UpstreamUnavailableError(self.name, reason) from None
        self._failures = 0
        if (size := _approximate_size(result)) > self._timings.max_result_bytes:
            raise UpstreamProtocolError(
                self.name, label, f"an answer of about {size} bytes (the limit is {self._timings.max_result_bytes})"
            )
        # The gateway answers the caller: the upstream's identity stamp must not pass as the gateway's.
        meta = getattr(result, "meta", None)
        if isinstance(meta, dict):
            meta.pop(SERVER_INFO_META_KEY, None)
        return result


_ResultT = TypeVar("_ResultT")
_TOOL_RESULT = TypeAdapter(types.CallToolResult | types.InputRequiredResult)
_PROMPT_RESULT = TypeAdapter(types.GetPromptResult | types.InputRequiredResult)
_READ_RESULT = TypeAdapter(types.ReadResourceResult | types.InputRequiredResult)


def _advertises_changes(client: Client) -> bool:
    capabilities = client.server_capabilities
    subscribable = capabilities.resources is not None and bool(capabilities.resources.subscribe)
    return subscribable or any(
        kind is not None and kind.list_changed
        for kind in (capabilities.tools, capabilities.prompts, capabilities.resources)
    )


def _subscribe(uri: str) -> types.ClientRequest:
    return types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))


def _unsubscribe(uri: str) -> types.ClientRequest:
    return types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri))


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _approximate_size(result: object) -> int:
    """The bulk of an answer (text and binary payloads), counted without serialising it."""
    size = 0
    for block in getattr(result, "content", None) or getattr(result, "contents", None) or ():
        for field in ("text", "data", "blob"):
            value = getattr(block, field, None)
            if isinstance(value, str):
                size += len(value)
        resource = getattr(block, "resource", None)
        if resource is not None:
            size += len(getattr(resource, "text", "") or getattr(resource, "blob", "") or "")
    return size


def _broken_stream(reason: str, limit: int) -> str:
    """What an upstream sent when the SDK gave up on one streamable-HTTP response stream."""
    if "byte limit" in reason:
        return f"an answer over the limit of {limit} bytes"
    if reason.startswith("SSE stream failed"):
        return "an invalid answer"
    return "a response stream that ended before the answer"


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
