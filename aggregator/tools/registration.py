"""What a caller may say when it registers a server (`register_service`), and the entry a REST service gets.

Every value is data: none is ever expanded. URLs are checked here for an early, clear refusal
(`checks.check_url`) and again on every connection (`aggregator.upstreams.transports`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from aggregator.errors import AccessDeniedError
from aggregator.policy.addresses import AddressPolicy
from aggregator.registry.models import SERVER_NAME_PATTERN
from aggregator.tools.base import Arguments
from aggregator.tools.checks import check_url

_OPENAPI_ONLY = ("spec", "base_url", "include", "exclude")
Selector = Annotated[str, Field(min_length=1, max_length=200)]


class Register(Arguments):
    """What a caller may say about a server it registers. Every value is data: none is ever expanded."""

    service_name: str = Field(pattern=SERVER_NAME_PATTERN, description="Name: 1-32 chars of a-z, 0-9, '-'.")
    transport: Literal["streamable-http", "sse", "stdio", "openapi"] = "streamable-http"
    url: str | None = Field(
        default=None,
        max_length=2048,
        description="The server's MCP URL (streamable-http, sse). It must reach a public address, "
        "or one in the operator's admin_allowed_networks; checked again on every connection.",
    )
    template: str | None = Field(
        default=None, description="stdio: the name of an operator-defined template (settings stdio_templates)."
    )
    values: dict[str, str] = Field(
        default_factory=dict, description="stdio: a value for each slot of the template; each must match its pattern."
    )
    spec: str | None = Field(
        default=None,
        max_length=2048,
        description="openapi: the URL of the REST service's OpenAPI document; checked as url is.",
    )
    base_url: str | None = Field(
        default=None,
        max_length=2048,
        description="openapi: where requests go (default: the document's first server URL); checked as url is.",
    )
    include: list[Selector] = Field(default_factory=list, max_length=500, description="openapi: operationIds or tags.")
    exclude: list[Selector] = Field(default_factory=list, max_length=500, description="openapi: operationIds or tags.")
    description: str = Field(default="", max_length=2000)
    tags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=32)
    prefix: str | None = Field(default=None, description="Namespace of exported names; default: the name.")
    timeout: float | None = Field(default=None, gt=0, le=600)

    @model_validator(mode="before")
    @classmethod
    def _no_command_line(cls, data: Any) -> Any:
        if isinstance(data, dict) and (given := [key for key in ("command", "args") if key in data]):
            raise ValueError(
                f"{' and '.join(given)} not accepted: a caller never gives a command line; "
                "name an operator-defined stdio template with 'template' and fill its slots with 'values'"
            )
        return data

    @model_validator(mode="after")
    def _openapi_keys_for_openapi(self) -> Register:
        if self.transport != "openapi" and (given := [key for key in _OPENAPI_ONLY if getattr(self, key)]):
            raise ValueError(f"{', '.join(given)} only for transport 'openapi'")
        return self


def openapi_entry(arguments: Register, addresses: AddressPolicy) -> dict[str, Any]:
    """A REST service's servers.yaml entry: its spec URL (never a file) and base URL, both checked as server URLs.

    A caller never gives credentials, headers or route maps: those are the operator's (servers.yaml).
    """
    if arguments.spec is None:
        raise AccessDeniedError("An openapi server needs spec: the http(s) URL of its OpenAPI document.")
    if arguments.url is not None or arguments.template is not None or arguments.values:
        raise AccessDeniedError("An openapi server takes spec and base_url, not url, template or values.")
    entry: dict[str, Any] = {"spec": arguments.spec}
    check_url(arguments.spec, addresses)
    if arguments.base_url is not None:
        check_url(arguments.base_url, addresses)
        entry["base_url"] = arguments.base_url
    for key in ("include", "exclude"):
        if value := getattr(arguments, key):
            entry[key] = list(value)
    return entry
