"""One upstream MCP server: a single long-lived client session shared by every caller.

`Upstream.run()` owns the connection (this module: the lifecycle). It connects (in whichever
protocol era the server speaks), lists the server's tools, then keeps the session until it
breaks, re-listing on `list_changed` and probing liveness every `health_interval`. When the
connection is lost it reconnects with exponential backoff and jitter. Callers' requests go
through the shared session concurrently (`requests.RequestPath`, guarded by a `breaker`), and
subscribed resources are followed by `following.ResourceFollowing`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from aggregator.errors import UpstreamError, UpstreamUnavailableError
from aggregator.policy.addresses import AddressPolicy
from aggregator.registry.models import AnyUpstream
from aggregator.upstreams.breaker import CircuitBreaker
from aggregator.upstreams.credentials import UpstreamAuth, current_tool
from aggregator.upstreams.failures import CONNECTION_ERRORS, backoff, describe, leaf, refused_credential
from aggregator.upstreams.following import ResourceFollowing, advertises_changes
from aggregator.upstreams.lean_route import LeanRoute
from aggregator.upstreams.listing import Listing, fetch_listing
from aggregator.upstreams.relay import relay_elicitation, relay_log, relay_roots, relay_sampling, speak_for_the_caller
from aggregator.upstreams.requests import COMPLETE_RESULT, PROMPT_RESULT, READ_RESULT, TOOL_RESULT, RequestPath
from aggregator.upstreams.state import Timings, UpstreamState
from aggregator.upstreams.tasks import call_as_task, current_task_link, offers_tasks
from aggregator.upstreams.transports import StdioTransport, transport_for

logger = logging.getLogger(__name__)


class Upstream:
    """A registered upstream server and its shared client session."""

    def __init__(
        self,
        name: str,
        spec: AnyUpstream,
        timings: Timings,
        on_change: Callable[[Upstream], None],
        auth: httpx2.Auth | None = None,
        on_resource_updated: Callable[[Upstream, str], Awaitable[None]] | None = None,
        addresses: AddressPolicy | None = None,
        folder: Path | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self._auth = auth
        self._timings = timings
        self._on_change = on_change
        self.state = UpstreamState.CONNECTING if spec.enabled else UpstreamState.DISABLED
        self.last_error: str | None = None
        self.last_check: float | None = None  # wall-clock time of the last successful listing
        self.latency_ms: float | None = None
        self.protocol_version: str | None = None
        self.listing = Listing()
        self._wakeup = anyio.Event()
        self._lost: str | None = None
        self._breaker = CircuitBreaker(name, timings.circuit_failures, timings.circuit_cooldown)
        self._transport = transport_for(
            spec, timings.connect_timeout, timings.max_result_bytes, addresses, upstream=name, folder=folder
        )
        self._requests = self._request_path(self._transport.per_request_streams)
        updated = None if on_resource_updated is None else partial(on_resource_updated, self)
        self._following = ResourceFollowing(name, self._requests, updated, self._probe_now)
        self.lean = LeanRoute(spec, auth, timings, self._request_path(True), self._requests, self._on_message)

    def _request_path(self, per_request_streams: bool) -> RequestPath:
        """A request path on this upstream's breaker and lifecycle hooks (the SDK client's, or the lean route's)."""
        return RequestPath(
            self.name,
            self.spec.timeout,
            self._timings.max_result_bytes,
            self._breaker,
            per_request_streams=per_request_streams,
            on_lost=self._mark_lost,
            on_suspect=self._probe_now,
            on_tripped=self._tripped,
            check_request=self._auth.check_request if isinstance(self._auth, UpstreamAuth) else None,
        )

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, {self.state})"

    @property
    def tools(self) -> tuple[types.Tool, ...]:
        """The upstream's tools as last listed."""
        return self.listing.tools

    @property
    def recent_stderr(self) -> tuple[str, ...]:
        """A stdio upstream's latest stderr lines, masked (none for other transports)."""
        return tuple(self._transport.recent_stderr) if isinstance(self._transport, StdioTransport) else ()

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
                self._set_unhealthy(describe(error), refused=refused_credential(error))
                if not isinstance(leaf(error), (MCPError, ValidationError, UpstreamError, *CONNECTION_ERRORS)):
                    logger.exception("upstream.unexpected_error", extra={"upstream": self.name})
            delay = backoff(failures, self._timings.backoff_initial, self._timings.backoff_max)
            failures += 1
            logger.info(
                "upstream.retry",
                extra={"upstream": self.name, "in_seconds": round(delay, 2), "error": self.last_error},
            )
            await anyio.sleep(delay)

    async def _connect_and_serve(self) -> None:
        self._lost = None
        self._wakeup = anyio.Event()
        auth = self.lean.auth(self._auth)  # the lean route shares the connection
        client = Client(
            self.lean.transport(self._transport.open(auth)),
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
                    self._requests.client = client
                    self.protocol_version = self._following.protocol_version = client.protocol_version
                    self.lean.connected(client, lambda: self.listing.tools)
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
                self._requests.client = None
                with anyio.CancelScope(shield=True):
                    await self.lean.disconnected()
        if connecting.cancelled_caught:
            raise TimeoutError

    async def _serve(self, client: Client) -> None:
        """Wait for changes; re-list on `list_changed` and on every health interval; return when lost."""
        async with anyio.create_task_group() as tasks:
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS and advertises_changes(client):
                tasks.start_soon(self._following.listen, client)
            else:
                await self._following.resubscribe()
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

    async def follow(self, uri: str) -> None:
        """Start forwarding updates of the resource `uri` (refcounted across callers)."""
        await self._following.follow(uri)

    async def unfollow(self, uri: str) -> None:
        """Stop forwarding updates of `uri` once no caller follows it any more."""
        await self._following.unfollow(uri)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            if self._transport.pipes:
                self._mark_lost(describe(message))  # the child's pipes broke: the session is gone
            else:
                # Over HTTP one failed request is not a lost session: the probe decides, now.
                logger.info("upstream.request_failed", extra={"upstream": self.name, "error": describe(message)})
                self._wakeup.set()
        elif isinstance(
            message,
            types.ToolListChangedNotification
            | types.PromptListChangedNotification
            | types.ResourceListChangedNotification,
        ):
            self._wakeup.set()
        elif isinstance(message, types.ResourceUpdatedNotification):
            await self._following.updated(str(message.params.uri))

    async def _probe(self, client: Client) -> Listing:
        """List everything; the time it takes is the upstream's latency."""
        started = anyio.current_time()
        listing = await fetch_listing(client)
        self.latency_ms = round((anyio.current_time() - started) * 1000, 1)
        self.last_check = time.time()
        return listing

    def _grade(self) -> None:
        slow = self.latency_ms is not None and self.latency_ms > self.spec.timeout * 500
        tripped = self._breaker.tripped  # a good probe must not hide an open circuit
        state = UpstreamState.DEGRADED if slow or tripped else UpstreamState.HEALTHY
        if state is not self.state:
            self.state = state
            self._on_change(self)

    async def refresh(self) -> None:
        """Re-list now (admin `refresh_service`); returns once the listing is current."""
        client = self._requests.client
        if client is None:
            raise UpstreamUnavailableError(self.name, self.last_error or "still connecting")
        with anyio.fail_after(self.spec.timeout):
            listing = await self._probe(client)
        self._grade()
        if listing != self.listing:
            self.listing = listing
            self._on_change(self)

    def _tripped(self) -> None:
        """The circuit opened: a healthy upstream shows as degraded until it closes."""
        if self.state is UpstreamState.HEALTHY:
            self.state = UpstreamState.DEGRADED
            self._on_change(self)

    def _probe_now(self) -> None:
        self._wakeup.set()

    def _mark_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
            self._wakeup.set()

    def _set_unhealthy(self, reason: str, *, refused: bool = False) -> None:
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
        """Call `tool` (its upstream name); the result, or the upstream's request for input, passes through.

        The background call of a gateway task runs as the upstream's own task where it serves them.
        """
        params = types.CallToolRequestParams(
            name=tool, arguments=arguments, input_responses=input_responses, request_state=request_state
        )
        current_tool.set(tool)
        request = types.CallToolRequest(params=params)
        if (link := current_task_link.get()) is not None and offers_tasks(self._requests.client):
            return await call_as_task(self._requests, self.name, request, link)
        return await self._requests.send(f"tools/call '{tool}'", request, TOOL_RESULT, progress)

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
        request = types.GetPromptRequest(params=params)
        return await self._requests.send(f"prompts/get '{prompt}'", request, PROMPT_RESULT)

    async def read_resource(
        self,
        uri: str,
        *,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        """Read the resource at `uri` (the upstream's own URI)."""
        params = types.ReadResourceRequestParams(uri=uri, input_responses=input_responses, request_state=request_state)
        request = types.ReadResourceRequest(params=params)
        return await self._requests.send(f"resources/read '{uri}'", request, READ_RESULT)

    async def complete(self, params: types.CompleteRequestParams) -> types.CompleteResult:
        """Ask the upstream to complete an argument of one of its prompts or resource templates."""
        request = types.CompleteRequest(params=params)
        return await self._requests.send("completion/complete", request, COMPLETE_RESULT)
