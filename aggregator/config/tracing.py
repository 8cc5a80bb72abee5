"""Tracing settings: OpenTelemetry's standard `OTEL_*` variables, read here and nowhere else.

Tracing is off unless configured: `OTEL_TRACES_EXPORTER` names an exporter (`otlp` or `console`),
or an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_EXPORTER_OTLP_ENDPOINT`
with `/v1/traces` appended, as the specification says). `OTEL_SDK_DISABLED=true` turns it off
whatever else is set. Only OTLP over HTTP (protobuf) is built in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import unquote

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from aggregator.errors import ConfigError, ConfigIssue

Exporter = Literal["", "otlp", "console", "none"]
Sampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]


class TracingSettings(BaseModel):
    """Where the gateway's spans go, and which traces it keeps; nothing set: no tracing at all."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    exporter: Exporter = Field(
        default="", validation_alias="OTEL_TRACES_EXPORTER", description="otlp, console or none."
    )
    endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="The OTLP/HTTP collector (the traces URL, or a base URL that gets /v1/traces).",
    )
    endpoint_is_base: bool = Field(
        default=True,
        exclude=True,
        description="Whether `endpoint` came from OTEL_EXPORTER_OTLP_ENDPOINT (a base URL).",
    )
    protocol: Literal["http/protobuf"] = Field(
        default="http/protobuf",
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        description="Only http/protobuf is built in (grpc would need grpcio).",
    )
    headers: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        description="key=value,key=value sent to the collector (often a credential: never logged).",
    )
    service_name: str = Field(default="mcp-aggregator", validation_alias="OTEL_SERVICE_NAME", min_length=1)
    sampler: Sampler = Field(default="parentbased_always_on", validation_alias="OTEL_TRACES_SAMPLER")
    sampler_arg: float = Field(default=1.0, ge=0, le=1, validation_alias="OTEL_TRACES_SAMPLER_ARG")
    disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")

    @field_validator("exporter", "sampler", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def enabled(self) -> bool:
        """Whether the gateway traces at all."""
        if self.disabled or self.exporter == "none":
            return False
        return self.exporter in ("otlp", "console") or self.endpoint is not None

    def traces_url(self) -> str:
        """The URL spans are posted to (OTLP/HTTP)."""
        endpoint = self.endpoint or "http://localhost:4318"
        if self.endpoint is None or self.endpoint_is_base:
            return endpoint.rstrip("/") + "/v1/traces"
        return endpoint

    def header_values(self) -> dict[str, str]:
        """`headers` as a mapping (`key=value` pairs separated by commas, values percent-decoded)."""
        text = self.headers.get_secret_value() if self.headers is not None else ""
        pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
        return {unquote(key).strip(): unquote(value).strip() for key, value in pairs}


def load_tracing_settings(environ: Mapping[str, str] | None = None) -> TracingSettings:
    """`TracingSettings` from the `OTEL_*` variables of `environ` (default: the process environment)."""
    source = os.environ if environ is None else environ
    chosen = {key: value for key, value in source.items() if key.startswith("OTEL_")}
    base = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in chosen
    try:
        return TracingSettings.model_validate({**chosen, "endpoint_is_base": base})
    except ValidationError as error:
        issues = [ConfigIssue("<environment>", ".".join(str(p) for p in e["loc"]), e["msg"]) for e in error.errors()]
        raise ConfigError(issues) from None
