"""Traces kept in memory: the gateway's own `Tracing`, an upstream that records its span, a gateway serving them.

The test's tracer provider is separate from the gateway's (as a caller's and an upstream's would
be in separate processes), and both export to one `InMemorySpanExporter`, so one trace id can be
followed across every span a call made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from aggregator.tracing import Tracing
from aggregator.upstreams.pool import UpstreamPool
from tests.harness import LiveGateway, gateway_from_files, serve_built, write_files

SCOPES = """
group_mappings:
  users: [traced-users]
traced-users:
- server: "*"
  methods: [tools/list, tools/call]
  tools: ["*"]
"""
USERS = ("users",)
W3C = TraceContextTextMapPropagator()


def memory_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    """A tracer provider whose spans land in `exporter` as they end."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def traced_upstream(tracer: Tracer) -> MCPServer[Any]:
    """An upstream whose `seen` tool records a SERVER span parented on the trace context it received
    (`_meta.traceparent`, else the HTTP header) and answers with both carriers as it saw them."""
    server: MCPServer[Any] = MCPServer("traced")

    @server.tool()
    def seen(ctx: Context) -> dict[str, Any]:
        """The traceparent this request carried, in `_meta` and in the HTTP header."""
        meta = dict(ctx.request_context.meta or {})
        request = ctx.request_context.request
        headers = dict(request.headers) if request is not None else {}
        carrier = meta if "traceparent" in meta else headers
        with tracer.start_as_current_span("upstream seen", context=W3C.extract(carrier), kind=SpanKind.SERVER):
            return {"meta": meta.get("traceparent"), "header": headers.get("traceparent")}

    return server


@asynccontextmanager
async def traced_gateway(
    directory: Path, servers: Mapping[str, Any], tracing: Tracing | None, **settings: Any
) -> AsyncIterator[LiveGateway]:
    """A secured gateway (tokens from `token_for`) built with `tracing`, served in-process until the block ends."""
    servers_file = write_files(directory, servers, SCOPES)
    gateway = gateway_from_files(
        directory,
        servers_file,
        scopes_file=directory / "scopes.yml",
        tracing=tracing,
        rate_limit_per_second=0,
        **settings,
    )
    async with serve_built(gateway, directory, until=UpstreamPool.all_connected) as live:
        yield live


def parent_of(span: ReadableSpan) -> int | None:
    return int(span.parent.span_id) if span.parent is not None else None


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def id_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def traceparent_ids(value: str) -> tuple[int, int]:
    """(trace id, span id) of a W3C traceparent value."""
    _, trace_id, span_id, _ = value.split("-")
    return int(trace_id, 16), int(span_id, 16)
