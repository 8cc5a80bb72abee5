"""Tracing is off unless the standard OTEL_* variables ask for it; an OTLP collector on loopback gets the spans."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aggregator.config.tracing import load_tracing_settings
from aggregator.errors import ConfigError
from aggregator.tracing.provider import tracing_from
from tests.harness import serve_asgi

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "environ",
    [{}, {"OTEL_SERVICE_NAME": "gw"}, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}],
    ids=["nothing", "only-a-name", "exporter-none"],
)
def test_tracing_is_off_unless_an_exporter_or_endpoint_is_configured(environ: dict[str, str]) -> None:
    assert tracing_from(load_tracing_settings(environ)) is None


def test_sdk_disabled_wins_over_everything() -> None:
    environ = {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}
    assert tracing_from(load_tracing_settings(environ)) is None


def test_the_endpoint_variables_follow_the_specification() -> None:
    base = load_tracing_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert base.enabled and base.traces_url() == "http://collector:4318/v1/traces"
    exact = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/t"}
    assert load_tracing_settings(exact).traces_url() == "http://c/t"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "2"),
    ],
)
def test_a_bad_variable_is_a_config_error_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_tracing_settings({"OTEL_TRACES_EXPORTER": "otlp", name: value})


def test_the_collector_headers_never_show_in_the_settings_text() -> None:
    settings = load_tracing_settings({"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20s3cret,x-team=gw"})
    assert settings.header_values() == {"authorization": "Bearer s3cret", "x-team": "gw"}
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], ExportTraceServiceRequest]]]]:
    """An OTLP/HTTP collector on loopback: it keeps each export's headers and decoded body."""
    received: list[tuple[dict[str, str], ExportTraceServiceRequest]] = []

    async def traces(request: Request) -> Response:
        body = ExportTraceServiceRequest()
        body.ParseFromString(await request.body())
        received.append((dict(request.headers), body))
        return Response(b"", media_type="application/x-protobuf")

    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    async with serve_asgi(app, path="") as url:
        yield url, received


async def test_spans_reach_an_otlp_collector_with_its_headers(
    collector: tuple[str, list[tuple[dict[str, str], ExportTraceServiceRequest]]],
) -> None:
    url, received = collector
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-key=k1",
        "OTEL_SERVICE_NAME": "gateway-under-test",
    }
    tracing = tracing_from(load_tracing_settings(environ))
    assert tracing is not None
    span = tracing.request("tools/call", "echo__echo", {}, {})
    span.end("ok")
    await anyio.to_thread.run_sync(tracing.close)  # flushes the batch: the export happens now
    assert len(received) == 1
    headers, body = received[0]
    assert headers["x-collector-key"] == "k1"
    (resource_spans,) = body.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    names = [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert (service, names) == ("gateway-under-test", ["tools/call echo__echo"])
