"""The client transports to upstreams: a `Transport` protocol, one implementation per kind (stdio,
streamable HTTP, legacy SSE), and `transport_for(spec)`.

An HTTP upstream that arrived through a tool call (`registered_by`) gets a client whose every TCP
connection goes through `CheckedBackend`: the host is resolved here, every address is checked
against the `AddressPolicy`, and the connection is made to a checked address, while the Host
header and TLS SNI keep the URL's name. So a name that resolves (now, or after a rebinding) to a
refused address is never connected to, on the first connection or any later one.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpcore2
import httpx2
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from aggregator.errors import AccessDeniedError
from aggregator.policy.addresses import AddressPolicy
from aggregator.registry.models import AnyUpstream, OpenApiUpstream, SseUpstream, StdioUpstream, StreamableHttpUpstream
from aggregator.sdk import TransportStreams, http_transport_on
from aggregator.tracing import add_trace_headers
from aggregator.upstreams.child import RECENT_LINES, StdioChild
from aggregator.upstreams.openapi import OpenApiTransport

# Long enough for an upstream to hold a response stream open; requests have their own timeouts.
_READ_TIMEOUT = 300.0


class Transport(Protocol):
    """How the gateway reaches one kind of upstream: one implementation per `transport:` in servers.yaml."""

    @property
    def per_request_streams(self) -> bool:
        """Whether each request has its own response stream, so one broken stream is not a lost session."""
        ...

    @property
    def pipes(self) -> bool:
        """Whether the session runs over a child's pipes, so any transport error means the session is gone."""
        ...

    def open(self, auth: httpx2.Auth | None) -> AbstractAsyncContextManager[TransportStreams]:
        """A new connection (HTTP requests signed by `auth`): the (read, write) stream pair until the block
        ends, then closed."""
        ...


@dataclass(frozen=True, slots=True)
class StdioTransport:
    """A child process speaking JSON-RPC on stdin/stdout.

    Leaving `open()` closes stdin, waits, then kills the child's whole process tree (the SDK's
    bounded shutdown), so no child outlives its upstream. How the command line is resolved, and how
    the child's stderr and exit are reported, is `aggregator.upstreams.child`.
    """

    spec: StdioUpstream
    upstream: str = "?"
    folder: Path | None = None
    """The servers file's folder: relative paths in the command line are taken from it (`child`)."""
    per_request_streams: bool = False
    pipes: bool = True
    recent_stderr: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_LINES))
    """The latest stderr lines of this upstream's children (masked), kept across restarts."""

    @asynccontextmanager
    async def open(self, auth: httpx2.Auth | None) -> AsyncIterator[TransportStreams]:
        async with StdioChild(self.upstream, self.spec, self.folder, self.recent_stderr).running() as streams:
            yield streams


@dataclass(frozen=True, slots=True)
class StreamableHttpTransport:
    """Streamable HTTP (both eras). A registered upstream connects only to addresses its policy allows."""

    spec: StreamableHttpUpstream
    connect_timeout: float
    max_event_bytes: int | None
    addresses: AddressPolicy
    per_request_streams: bool = True
    pipes: bool = False

    @asynccontextmanager
    async def open(self, auth: httpx2.Auth | None) -> AsyncIterator[TransportStreams]:
        spec = self.spec
        transport = checked_transport(self.addresses) if spec.registered_by is not None else None
        timeout = httpx2.Timeout(self.connect_timeout, read=_READ_TIMEOUT)
        async with (
            httpx2.AsyncClient(
                headers=spec.headers,
                timeout=timeout,
                auth=auth,
                trust_env=False,
                transport=transport,
                event_hooks={"request": [add_trace_headers]},
            ) as http,
            streamable_http_client(spec.url, http_client=http, max_sse_event_size=self.max_event_bytes) as streams,
        ):
            yield streams


@dataclass(frozen=True, slots=True)
class SseTransport:
    """The legacy HTTP+SSE transport. A registered upstream connects only to addresses its policy allows."""

    spec: SseUpstream
    connect_timeout: float
    addresses: AddressPolicy
    per_request_streams: bool = False
    pipes: bool = False

    @asynccontextmanager
    async def open(self, auth: httpx2.Auth | None) -> AsyncIterator[TransportStreams]:
        spec = self.spec
        factory: Any = {}
        if spec.registered_by is not None:
            factory = {"httpx_client_factory": functools.partial(_client, checked_transport(self.addresses))}
        async with sse_client(
            spec.url,
            headers=dict(spec.headers),
            timeout=self.connect_timeout,
            sse_read_timeout=_READ_TIMEOUT,
            auth=auth,
            **factory,
        ) as streams:
            yield streams


def transport_for(
    spec: AnyUpstream,
    connect_timeout: float,
    max_event_bytes: int | None = None,
    addresses: AddressPolicy | None = None,
    *,
    upstream: str = "?",
    folder: Path | None = None,
) -> Transport:
    """The transport `spec` asks for. A registered HTTP upstream connects only to addresses `addresses`
    allows (none given: only public ones). A stdio upstream's logs and errors name `upstream`; its
    relative paths are taken from `folder`, the servers file's folder."""
    policy = addresses or AddressPolicy()
    match spec:
        case StdioUpstream():
            return StdioTransport(spec, upstream, folder)
        case StreamableHttpUpstream():
            return StreamableHttpTransport(spec, connect_timeout, max_event_bytes, policy)
        case SseUpstream():
            return SseTransport(spec, connect_timeout, policy)
        case OpenApiUpstream():
            connector = functools.partial(checked_transport, policy) if spec.registered_by is not None else None
            return OpenApiTransport(spec, upstream, folder, connect_timeout, policy, connector)


def _client(
    transport: httpx2.AsyncBaseTransport,
    headers: dict[str, str] | None = None,
    timeout: httpx2.Timeout | None = None,
    auth: httpx2.Auth | None = None,
) -> httpx2.AsyncClient:
    """The SSE client's HTTP client, on `transport` and never through a proxy from the environment."""
    return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, trust_env=False, transport=transport)


def checked_transport(addresses: AddressPolicy) -> httpx2.AsyncHTTPTransport:
    """An HTTP transport (no proxy, system CAs) whose connections go only to addresses `addresses` allows."""
    return http_transport_on(CheckedBackend(addresses), keepalive_expiry=5.0)


class CheckedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves each host itself, checks every address, and connects only to a checked one."""

    def __init__(self, addresses: AddressPolicy) -> None:
        self._addresses = addresses
        self._network = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                allowed = await self._addresses.resolve(host, port)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"resolving {host} took longer than {timeout:g} s") from None
        except AccessDeniedError as refusal:
            raise httpcore2.ConnectError(f"not connecting: {refusal}") from None
        except OSError as error:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {error.strerror or error}") from None
        failure: Exception = httpcore2.ConnectError(f"{host} has no address")
        for address in allowed:
            try:
                return await self._network.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as error:
                failure = error
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("a registered upstream may not use a unix socket")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
