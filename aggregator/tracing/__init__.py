"""Traces across the hop: caller -> gateway -> upstream, one trace id (OpenTelemetry, W3C trace context).

    provider.py   `tracing_from(settings)`: the gateway's own tracer provider and exporter (OTLP/HTTP or
                  console) from the `OTEL_*` settings; None when tracing is not configured
    spans.py      `Tracing`: one SERVER span per MCP request at the edge, parented on the caller's
                  `_meta.traceparent` or HTTP `traceparent`; `upstream_call`: one CLIENT span per upstream
                  request; `propagate` / `add_trace_headers`: its context towards the upstream

The provider is the gateway's, not OpenTelemetry's global one, so the SDK's own per-message spans
stay no-ops (they would double the gateway's) while still passing the current context on. Off,
the edge tests one attribute and the upstream side one context variable: nothing else runs, and the
exporter (`provider`, which loads protobuf and requests) is imported only by the CLI that builds it.
"""

from aggregator.tracing.spans import RequestSpan, Tracing, add_trace_headers, propagate, upstream_call

__all__ = ["RequestSpan", "Tracing", "add_trace_headers", "propagate", "upstream_call"]
