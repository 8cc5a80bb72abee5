"""Open the client transport an upstream spec asks for: stdio, streamable HTTP or legacy SSE."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from aggregator.registry.models import SseUpstream, StdioUpstream, StreamableHttpUpstream
from aggregator.sdk import TransportStreams

# Long enough for an upstream to hold a response stream open; requests have their own timeouts.
_READ_TIMEOUT = 300.0


@asynccontextmanager
async def open_transport(
    spec: StdioUpstream | StreamableHttpUpstream | SseUpstream,
    connect_timeout: float,
    auth: httpx2.Auth | None = None,
    max_event_bytes: int | None = None,
) -> AsyncIterator[TransportStreams]:
    """Yield the (read, write) stream pair of a new connection to the upstream `spec` describes.

    Leaving the context closes the connection; for stdio that closes stdin, waits, then kills the
    child's whole process tree (the SDK's bounded shutdown), so no child outlives its upstream.
    """
    if isinstance(spec, StdioUpstream):
        parameters = StdioServerParameters(
            command=spec.command,
            args=list(spec.args),
            env=dict(spec.env) or None,
            cwd=spec.cwd,
        )
        async with stdio_client(parameters, errlog=sys.stderr) as streams:
            yield streams
    elif isinstance(spec, StreamableHttpUpstream):
        timeout = httpx2.Timeout(connect_timeout, read=_READ_TIMEOUT)
        async with (
            httpx2.AsyncClient(headers=spec.headers, timeout=timeout, auth=auth, trust_env=False) as http,
            streamable_http_client(spec.url, http_client=http, max_sse_event_size=max_event_bytes) as streams,
        ):
            yield streams
    else:
        async with sse_client(
            spec.url, headers=dict(spec.headers), timeout=connect_timeout, sse_read_timeout=_READ_TIMEOUT, auth=auth
        ) as streams:
            yield streams
