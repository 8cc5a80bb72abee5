"""The gateway's spans: one per MCP request at the edge, one per upstream request beneath it.

The request span's parent is the caller's W3C trace context: `_meta.traceparent` (SEP-414, per
request) or else the HTTP `traceparent` header. Any other value (malformed, not a string, absent)
starts a new trace: a caller cannot break a request through its trace context. The upstream span
is current while the request goes out, so its context travels on: `propagate` writes it into the
lean path's `_meta` and headers, `add_trace_headers` onto the SDK client's HTTP requests, and the
SDK's own client stamps `_meta.traceparent` from it.

`_active` is set only inside a traced request: with tracing off, `upstream_call`, `propagate` and
`add_trace_headers` read one context variable and return.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

import httpx2
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MAX_CARRIER_CHARACTERS = 512
"""A longer traceparent or tracestate from a caller is ignored (W3C: traceparent is 55, tracestate at most 512)."""
OK_OUTCOMES = frozenset({"ok"})

_W3C = TraceContextTextMapPropagator()
_OFF: AbstractContextManager[None] = nullcontext()
_active: ContextVar[Tracing | None] = ContextVar("mcp_aggregator_tracing", default=None)


class _StringsOnly(Getter[Mapping[str, Any]]):
    """Reads a carrier's values only when they are short strings (a caller's `_meta` may hold anything)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, str) and len(value) <= MAX_CARRIER_CHARACTERS:
            return [value]
        return None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key for key in carrier if isinstance(key, str)]


_GETTER = _StringsOnly()


def caller_carrier(meta: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> dict[str, Any]:
    """The caller's trace context: `_meta.traceparent` (with its tracestate) if present, else the HTTP headers'."""
    for source in (meta, headers):
        if source is not None and TRACEPARENT in source:
            return {key: source.get(key) for key in (TRACEPARENT, TRACESTATE) if key in source}
    return {}


class RequestSpan:
    """One MCP request's span while it is served: current, and ended with the request's outcome."""

    def __init__(self, span: Span, context_token: object, active_token: Token[Tracing | None]) -> None:
        self.span = span
        self._context_token = context_token
        self._active_token = active_token

    def end(self, outcome: str) -> None:
        """Record `outcome` (the audit log's word for it), end the span and leave its context."""
        self.span.set_attribute("mcp_aggregator.outcome", outcome)
        if outcome not in OK_OUTCOMES:
            self.span.set_attribute("error.type", outcome)
            self.span.set_status(StatusCode.ERROR)
        self.span.end()
        otel_context.detach(self._context_token)  # type: ignore[arg-type]
        _active.reset(self._active_token)


class Tracing:
    """The gateway's tracer: its provider (the gateway's own, not the process-global one) and the spans it makes."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("mcp-aggregator")

    def request(
        self, method: str, name: str | None, meta: Mapping[str, Any] | None, headers: Mapping[str, str] | None
    ) -> RequestSpan:
        """Start the SERVER span of one MCP request and make it current (until `RequestSpan.end`)."""
        carrier = caller_carrier(meta, headers)
        parent = _W3C.extract(carrier, getter=_GETTER) if carrier else None
        attributes: dict[str, str] = {"mcp.method.name": method}
        if name is not None:
            attributes["gen_ai.tool.name" if method == "tools/call" else "mcp_aggregator.target"] = name
        span = self._tracer.start_span(
            f"{method} {name}" if name else method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        context_token = otel_context.attach(trace.set_span_in_context(span, parent))
        return RequestSpan(span, context_token, _active.set(self))

    @contextmanager
    def _upstream(self, upstream: str, request: object) -> Iterator[None]:
        method = str(getattr(request, "method", "request"))
        name = getattr(getattr(request, "params", None), "name", None)
        attributes = {"mcp.method.name": method, "mcp_aggregator.upstream": upstream}
        if isinstance(name, str):
            attributes["gen_ai.tool.name" if method == "tools/call" else "mcp_aggregator.target"] = name
        with self._tracer.start_as_current_span(
            f"{method} {upstream}", kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            try:
                yield
            except BaseException as error:
                span.set_attribute("error.type", type(error).__name__)
                span.set_status(StatusCode.ERROR, str(error)[:200])
                raise

    def close(self) -> None:
        """Export what is still buffered and stop (blocking, bounded by the exporter's timeout)."""
        self.provider.shutdown()


def upstream_call(upstream: str, request: object) -> AbstractContextManager[None]:
    """The CLIENT span of `request` (an MCP request model) to `upstream`, current for the block; outside a
    traced request, nothing."""
    tracing = _active.get()
    if tracing is None:
        return _OFF
    return tracing._upstream(upstream, request)


def propagate(params: MutableMapping[str, Any], headers: MutableMapping[str, str]) -> None:
    """Put the current span's context into a request's `_meta` and HTTP headers (the lean path's framing)."""
    if _active.get() is None:
        return
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        meta = params["_meta"] = {}
    _W3C.inject(meta)
    _W3C.inject(headers)


async def add_trace_headers(request: httpx2.Request) -> None:
    """An httpx2 request hook: the current span's `traceparent` on an upstream HTTP request of a traced call."""
    if _active.get() is not None:
        _W3C.inject(request.headers)
