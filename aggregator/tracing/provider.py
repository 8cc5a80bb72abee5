"""The gateway's tracer provider, built from `TracingSettings`: an exporter, a sampler, a service name.

OpenTelemetry's SDK and the OTLP exporter (protobuf, requests: about half a second) are imported
only when tracing is configured, so a gateway without `OTEL_*` settings starts as fast as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aggregator.config.tracing import TracingSettings
from aggregator.tracing.spans import Tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.sampling import Sampler

EXPORT_TIMEOUT = 10.0
"""Seconds one export to the collector may take (it runs in the exporter's own thread, never in a request)."""


def tracing_from(settings: TracingSettings) -> Tracing | None:
    """The gateway's `Tracing`, or None when the `OTEL_*` settings do not ask for traces."""
    if not settings.enabled:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if settings.exporter == "console":
        exporter = ConsoleSpanExporter(service_name=settings.service_name)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=settings.traces_url(), headers=settings.header_values(), timeout=EXPORT_TIMEOUT
        )
    provider = TracerProvider(resource=Resource({"service.name": settings.service_name}), sampler=sampler(settings))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider)


def sampler(settings: TracingSettings) -> Sampler:
    """The sampler `OTEL_TRACES_SAMPLER` (and its argument) names."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

    ratio = TraceIdRatioBased(settings.sampler_arg)
    match settings.sampler:
        case "always_on":
            return ALWAYS_ON
        case "always_off":
            return ALWAYS_OFF
        case "traceidratio":
            return ratio
        case "parentbased_always_off":
            return ParentBased(ALWAYS_OFF)
        case "parentbased_traceidratio":
            return ParentBased(ratio)
    return ParentBased(ALWAYS_ON)
