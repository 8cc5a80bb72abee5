"""One trace from the caller through the gateway to the upstream, on both paths, both eras, HTTP and stdio.

The caller's span, the gateway's request span, the gateway's upstream span and the upstream's own
span end in one in-memory exporter; each test follows the trace id and the parent links across them.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from aggregator.tracing import Tracing
from tests.harness import ERAS, Era, LiveGateway, call_structured, serve_mcp, token_for
from tests.tracing.traced import (
    USERS,
    id_of,
    memory_provider,
    parent_of,
    trace_of,
    traced_gateway,
    traced_upstream,
    traceparent_ids,
)

pytestmark = pytest.mark.anyio

REPOSITORY = Path(__file__).resolve().parents[2]
CALLER_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN = 0x00F067AA0BA902B7
CALLER_TRACEPARENT = f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01"
PATHS = (True, False)


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(autouse=True)
def cleared(exporter: InMemorySpanExporter) -> None:
    """Each test reads only its own spans (a module's tests run one after another)."""
    exporter.clear()


@pytest.fixture(scope="module")
def tracer(exporter: InMemorySpanExporter) -> Tracer:
    """The caller's and the upstream's tracer (the gateway has its own provider, on the same exporter)."""
    return memory_provider(exporter).get_tracer("tests")


@pytest.fixture(scope="module")
async def upstream_url(tracer: Tracer) -> AsyncIterator[str]:
    async with serve_mcp(traced_upstream(tracer)) as url:
        yield url


@pytest.fixture(scope="module")
async def gateways(
    tmp_path_factory: pytest.TempPathFactory, upstream_url: str, exporter: InMemorySpanExporter
) -> AsyncIterator[dict[bool, LiveGateway]]:
    """Two traced gateways before the HTTP and the stdio upstream: by `lean_path`."""
    piped = {"transport": "stdio", "command": sys.executable, "args": ["-m", "tests.tracing.stdio_upstream"]}
    servers = {
        "traced": {"transport": "streamable-http", "url": upstream_url},
        "piped": {**piped, "cwd": str(REPOSITORY)},
    }
    async with AsyncExitStack() as stack:
        found = {}
        for lean in PATHS:
            tracing = Tracing(memory_provider(exporter))
            folder = tmp_path_factory.mktemp("lean" if lean else "sdk")
            found[lean] = await stack.enter_async_context(traced_gateway(folder, servers, tracing, lean_path=lean))
        yield found


def spans(exporter: InMemorySpanExporter, name: str, kind: SpanKind | None = None) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name and (kind is None or s.kind == kind)]


def one(found: list[ReadableSpan]) -> ReadableSpan:
    assert len(found) == 1, [span.name for span in found]
    return found[0]


def client_with_header(live: LiveGateway, era: Era, headers: dict[str, str]) -> Any:
    """An MCP client of `live` whose every HTTP request carries `headers` besides its bearer token."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token_for('tina', groups=USERS)}", **headers})
    return http, Client(streamable_http_client(live.url, http_client=http), mode=era)


@pytest.mark.parametrize("lean", PATHS, ids=["lean", "sdk"])
@pytest.mark.parametrize("era", ERAS)
async def test_one_trace_from_the_caller_through_the_gateway_to_an_http_upstream(
    gateways: dict[bool, LiveGateway], exporter: InMemorySpanExporter, tracer: Tracer, era: Era, lean: bool
) -> None:
    async with gateways[lean].client("tina", groups=USERS, era=era) as client:
        with tracer.start_as_current_span("caller", kind=SpanKind.CLIENT) as caller:
            seen = await call_structured(client, "traced__seen", {})  # the SDK client puts _meta.traceparent on

    edge = one(spans(exporter, "tools/call traced__seen", SpanKind.SERVER))
    hop = one(spans(exporter, "tools/call traced", SpanKind.CLIENT))
    upstream = one(spans(exporter, "upstream seen"))
    trace_id = caller.get_span_context().trace_id
    assert {trace_of(edge), trace_of(hop), trace_of(upstream)} == {trace_id}
    assert parent_of(edge) == caller.get_span_context().span_id
    assert parent_of(hop) == id_of(edge)
    assert parent_of(upstream) == id_of(hop)
    # The upstream got the gateway's hop both ways: the HTTP header and _meta.traceparent.
    assert traceparent_ids(seen["header"]) == traceparent_ids(seen["meta"]) == (trace_id, id_of(hop))
    assert edge.attributes is not None and edge.attributes["mcp_aggregator.outcome"] == "ok"
    assert hop.attributes is not None and hop.attributes["mcp_aggregator.upstream"] == "traced"
    # Neither the principal nor its token is in any span the gateway made.
    for span in (edge, hop):
        recorded = repr(dict(span.attributes or {})) + span.name
        assert "tina" not in recorded and "Bearer" not in recorded and "eyJ" not in recorded


@pytest.mark.parametrize("lean", PATHS, ids=["lean", "sdk"])
async def test_the_http_traceparent_header_parents_the_trace_when_meta_has_none(
    gateways: dict[bool, LiveGateway], exporter: InMemorySpanExporter, lean: bool
) -> None:
    http, client = client_with_header(gateways[lean], "auto", {"traceparent": CALLER_TRACEPARENT})
    async with http, client:
        seen = await call_structured(client, "traced__seen", {})

    edge = one(spans(exporter, "tools/call traced__seen", SpanKind.SERVER))
    assert (trace_of(edge), parent_of(edge)) == (CALLER_TRACE, CALLER_SPAN)
    hop = one(spans(exporter, "tools/call traced", SpanKind.CLIENT))
    assert traceparent_ids(seen["header"]) == (CALLER_TRACE, id_of(hop))


@pytest.mark.parametrize("lean", PATHS, ids=["lean", "sdk"])
async def test_a_stdio_upstream_gets_the_trace_in_meta(
    gateways: dict[bool, LiveGateway], exporter: InMemorySpanExporter, tracer: Tracer, lean: bool
) -> None:
    async with gateways[lean].client("tina", groups=USERS) as client:
        with tracer.start_as_current_span("caller") as caller:
            seen = await call_structured(client, "piped__seen", {})

    hop = one(spans(exporter, "tools/call piped", SpanKind.CLIENT))
    assert trace_of(hop) == caller.get_span_context().trace_id
    assert traceparent_ids(seen["meta"]) == (caller.get_span_context().trace_id, id_of(hop))


BAD_CARRIERS = [
    pytest.param({"traceparent": "garbage"}, {}, id="meta-garbage"),
    pytest.param({"traceparent": 12345}, {}, id="meta-number"),
    pytest.param({"traceparent": CALLER_TRACEPARENT + "x" * 10_000}, {}, id="meta-huge"),
    pytest.param({"traceparent": f"00-{0:032x}-{CALLER_SPAN:016x}-01"}, {}, id="meta-zero-trace"),
    pytest.param({}, {"traceparent": "00-not-hex-at-all"}, id="header-garbage"),
]


@pytest.mark.parametrize(("meta", "headers"), BAD_CARRIERS)
@pytest.mark.parametrize("lean", PATHS, ids=["lean", "sdk"])
async def test_a_malformed_trace_context_starts_a_new_trace_and_the_call_succeeds(
    gateways: dict[bool, LiveGateway],
    exporter: InMemorySpanExporter,
    meta: dict[str, Any],
    headers: dict[str, str],
    lean: bool,
) -> None:
    http, client = client_with_header(gateways[lean], "auto", headers)
    async with http, client:
        result = await client.call_tool("traced__seen", {}, meta=meta)  # type: ignore[arg-type]
    assert not result.is_error, result
    edge = one(spans(exporter, "tools/call traced__seen", SpanKind.SERVER))
    assert edge.parent is None, "a span parented on a context the caller did not validly send"
    assert trace_of(edge) not in (0, CALLER_TRACE)
    upstream = one(spans(exporter, "upstream seen"))
    assert trace_of(upstream) == trace_of(edge)


@pytest.mark.parametrize("lean", PATHS, ids=["lean", "sdk"])
async def test_a_refused_call_is_an_error_span_without_an_upstream_span(
    gateways: dict[bool, LiveGateway], exporter: InMemorySpanExporter, lean: bool
) -> None:
    async with gateways[lean].client("tina", groups=USERS) as client:
        with pytest.raises(Exception, match="traced__unknown"):
            await client.call_tool("traced__unknown", {})
    edge = one(spans(exporter, "tools/call traced__unknown", SpanKind.SERVER))
    assert edge.status.status_code is StatusCode.ERROR
    assert edge.attributes is not None and edge.attributes["error.type"] == "UnknownNameError"
    assert spans(exporter, "tools/call traced", SpanKind.CLIENT) == []


@pytest.mark.parametrize("lean", PATHS, ids=["lean", "sdk"])
async def test_without_tracing_nothing_is_added_towards_the_upstream(
    tmp_path: Path, upstream_url: str, exporter: InMemorySpanExporter, lean: bool
) -> None:
    servers = {"traced": {"transport": "streamable-http", "url": upstream_url}}
    async with traced_gateway(tmp_path, servers, None, lean_path=lean) as live:
        http, client = client_with_header(live, "auto", {"traceparent": CALLER_TRACEPARENT})
        async with http, client:
            seen = await call_structured(client, "traced__seen", {})
    assert seen["header"] is None  # the caller's header is not relayed, and the gateway made no span
    assert [span.name for span in exporter.get_finished_spans()] == ["upstream seen"]
