"""servers.yaml: the registered upstreams, as a discriminated union on `transport`.

`load_servers` reports every problem with its file, line, key path and reason. `${VAR}` in the
operator's entries comes from the environment, so secrets stay out of the file. An entry written by
`register_service` carries `registered_by` (only the gateway writes it): it is caller input, so
nothing in it is ever expanded, and its addresses are checked on every connection.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aggregator.config.yamlfile import YamlDocument, read_yaml
from aggregator.errors import ConfigError, ConfigIssue
from aggregator.registry.federation_settings import FollowedRegistry
from aggregator.registry.openapi import RouteMapEntry

SERVER_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
_UNION_TAGS = frozenset(
    {"stdio", "streamable-http", "sse", "openapi", "bearer", "oauth2-client-credentials", "aws-sigv4"}
)
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


IdentityHeader = Literal[
    "X-User", "X-Username", "X-Client-Id", "X-Scopes", "X-Auth-Method", "X-Server-Name", "X-Tool-Name"
]


class _SecretSource(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def _read(self, name: str, value: SecretStr | None, env: str | None, file: Path | None) -> SecretStr:
        """The secret from the environment or a file, resolved once at load time (the edge)."""
        if value is not None:
            return value
        if env is not None:
            if env not in os.environ:
                raise ValueError(f"environment variable '{env}' ({name}) is not set")
            return SecretStr(os.environ[env])
        if file is not None:
            try:
                return SecretStr(file.read_text(encoding="utf-8").strip())
            except OSError as error:
                raise ValueError(f"{name} file {file} cannot be read: {error.strerror}") from None
        raise ValueError(f"{name} needs one of: {name}_env, {name}_file")


class BearerAuthSettings(_SecretSource):
    """A static bearer token of the upstream's own (never the caller's)."""

    type: Literal["bearer"]
    token_env: str | None = None
    token_file: Path | None = None
    token: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _resolve(self) -> BearerAuthSettings:
        object.__setattr__(self, "token", self._read("token", self.token, self.token_env, self.token_file))
        return self


class ClientCredentialsAuthSettings(_SecretSource):
    """OAuth 2.0 client credentials: the gateway fetches (and caches, and refreshes) its own token."""

    type: Literal["oauth2-client-credentials"]
    token_url: str = Field(pattern=r"^https?://")
    client_id: str
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    client_secret: SecretStr | None = Field(default=None, exclude=True)
    scope: str | None = None
    audience: str | None = Field(default=None, description="Sent as `audience` (Auth0) when given.")

    @model_validator(mode="after")
    def _resolve(self) -> ClientCredentialsAuthSettings:
        secret = self._read("client_secret", self.client_secret, self.client_secret_env, self.client_secret_file)
        object.__setattr__(self, "client_secret", secret)
        return self


class SigV4AuthSettings(BaseModel):
    """AWS Signature V4 with boto3's credential chain (env, profile, instance role, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["aws-sigv4"]
    service: str = Field(min_length=1, description="e.g. execute-api, lambda, bedrock-agentcore")
    region: str = Field(min_length=1)
    profile: str | None = None


UpstreamAuthSettings = Annotated[
    BearerAuthSettings | ClientCredentialsAuthSettings | SigV4AuthSettings, Field(discriminator="type")
]


class _UpstreamBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    required: bool = Field(
        default=False, description="Whether the gateway is ready (/readyz) only while this server is connected."
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for any one request.")
    description: str = ""
    tags: tuple[str, ...] = ()
    prefix: Annotated[str, Field(pattern=r"^$|^[a-z0-9][a-z0-9-]{0,31}$")] | None = Field(
        default=None, description="Namespace of exported names; default: the server name; '' for none."
    )
    registered_by: str | None = Field(
        default=None,
        description="The principal that registered this server through register_service (written by the gateway). "
        "Such an entry is data: never expanded from the environment; its addresses are checked at connect time.",
    )
    on_change: Literal["hold", "warn", "accept"] | None = Field(
        default=None,
        description="When a tool's definition changes or a tool is added: hold it until an operator approves it, "
        "serve it with an alert (warn), or serve it (accept). Default: hold for registered entries, else warn.",
    )


class StdioUpstream(_UpstreamBase):
    """An upstream the gateway launches as a child process and talks to over stdin/stdout."""

    transport: Literal["stdio"]
    command: str = Field(min_length=1)
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None


class _HttpUpstream(_UpstreamBase):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    auth: UpstreamAuthSettings | None = None
    identity_headers: tuple[IdentityHeader, ...] = Field(
        default=(), description="Caller identity sent as plain headers (never the caller's token)."
    )
    forward_caller_token: bool = Field(
        default=False, description="nginx passthrough only: relay the caller's Authorization header upstream."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"'{url}' is not an http(s) URL")
        return url


class StreamableHttpUpstream(_HttpUpstream):
    """An upstream reached over streamable HTTP (either protocol era)."""

    transport: Literal["streamable-http"]


class SseUpstream(_HttpUpstream):
    """An upstream reached over the legacy HTTP+SSE transport."""

    transport: Literal["sse"]


class OpenApiUpstream(_UpstreamBase):
    """A REST service described by an OpenAPI document: the gateway serves its operations as tools, in-process."""

    transport: Literal["openapi"]
    spec: str = Field(min_length=1, description="The OpenAPI document (JSON or YAML): an http(s) URL or a file path.")
    base_url: str | None = Field(
        default=None, description="Where requests go; default: the first `servers` URL of the document."
    )
    headers: dict[str, str] = Field(default_factory=dict)
    auth: UpstreamAuthSettings | None = None
    identity_headers: tuple[IdentityHeader, ...] = Field(
        default=(), description="Caller identity sent as plain headers (never the caller's token)."
    )
    include: tuple[str, ...] = Field(default=(), description="Only these operationIds or tags (default: every one).")
    exclude: tuple[str, ...] = Field(default=(), description="Never these operationIds or tags (wins over include).")
    route_map: tuple[RouteMapEntry, ...] = ()
    names: dict[str, str] = Field(default_factory=dict, description="Tool names by operationId, to shorten long ones.")

    @field_validator("spec")
    @classmethod
    def _url_or_path(cls, spec: str, info: ValidationInfo) -> str:
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", spec)
        if scheme and scheme.group(1).lower() not in ("http", "https"):
            raise ValueError(f"'{spec}' is neither an http(s) URL nor a file path")
        if scheme and not re.match(r"^https?://[^/\s]+", spec):
            raise ValueError(f"'{spec}' is not an http(s) URL")
        if not scheme and info.data.get("registered_by") is not None:
            raise ValueError(
                f"'{spec}' is a file path; a server registered through a tool call gives its spec as an http(s) URL "
                "(a caller may not have the gateway read its files)"
            )
        return spec

    @field_validator("base_url")
    @classmethod
    def _http_base_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"'{url}' is not an http(s) URL")
        return url


AnyUpstream = StdioUpstream | StreamableHttpUpstream | SseUpstream | OpenApiUpstream
"""Any one entry of servers.yaml."""

UpstreamSpec = Annotated[AnyUpstream, Field(discriminator="transport")]


class ServersFile(BaseModel):
    """The contents of `servers.yaml`: registered upstreams by name, and the registries followed (`registries:`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    servers: dict[Annotated[str, Field(pattern=SERVER_NAME_PATTERN)], UpstreamSpec] = Field(default_factory=dict)
    registries: dict[Annotated[str, Field(pattern=SERVER_NAME_PATTERN)], FollowedRegistry[UpstreamAuthSettings]] = {}

    @model_validator(mode="after")
    def _unique_prefixes(self) -> ServersFile:
        owners: dict[str, str] = {}
        for name, spec in self.servers.items():
            prefix = exported_prefix(name, spec)
            if prefix == "":
                continue
            if prefix in owners:
                raise ValueError(f"servers '{owners[prefix]}' and '{name}' both export under the prefix '{prefix}'")
            owners[prefix] = name
        return self


def exported_prefix(name: str, spec: AnyUpstream) -> str:
    """The namespace under which a server's capabilities are exported."""
    return name if spec.prefix is None else spec.prefix


def load_servers(path: Path, environ: Mapping[str, str] | None = None) -> ServersFile:
    """Read and validate `servers.yaml`, reporting every problem with its file, path, line and reason."""
    return validate_servers(read_yaml(path), environ)


def validate_servers(document: YamlDocument, environ: Mapping[str, str] | None = None) -> ServersFile:
    """Validate a parsed servers file (from disk, or about to be written) after `${VAR}` expansion."""
    environ = os.environ if environ is None else environ
    data = document.data if document.data is not None else {}
    issues: list[ConfigIssue] = []
    data = _expand_operator_entries(data, environ, document, issues)
    try:
        servers = ServersFile.model_validate(data)
    except ValidationError as error:
        for item in error.errors():
            location = tuple(str(part) for part in item["loc"] if not str(part).startswith(("function-", "tagged-")))
            # Union members show up in the location as the transport name; drop that noise.
            location = tuple(p for p in location if p not in _UNION_TAGS or p == location[-1])
            message = item["msg"].removeprefix("Value error, ")
            if location and location[-1] == "[key]":
                location = location[:-1]
                message = "a server name is 1-32 characters of a-z, 0-9 and '-', starting with a letter or digit"
            elif item["type"] == "extra_forbidden":
                message = "unknown key"
            issues.append(ConfigIssue(str(document.path), ".".join(location), message, document.line_of(location)))
    if issues:
        raise ConfigError(issues)
    return servers


def _expand_operator_entries(data: Any, environ: Mapping[str, str], document: Any, issues: list[ConfigIssue]) -> Any:
    """Expand `${VAR}` in the operator's entries only: a registered entry (`registered_by`) stays as written."""
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        return _expand_env(data, (), environ, document, issues)
    expanded = {
        name: entry if is_registered(entry) else _expand_env(entry, ("servers", str(name)), environ, document, issues)
        for name, entry in servers.items()
    }
    rest = {key: value for key, value in data.items() if key != "servers"}
    return {**_expand_env(rest, (), environ, document, issues), "servers": expanded}


def is_registered(entry: Any) -> bool:
    """Whether a raw servers.yaml entry was written by `register_service` (and so is caller input)."""
    return isinstance(entry, dict) and entry.get("registered_by") is not None


def _expand_env(
    value: Any,
    location: tuple[str, ...],
    environ: Mapping[str, str],
    document: Any,
    issues: list[ConfigIssue],
) -> Any:
    if isinstance(value, dict):
        return {key: _expand_env(item, (*location, str(key)), environ, document, issues) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand_env(item, (*location, str(i)), environ, document, issues) for i, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        variable = match.group(1)
        if variable not in environ:
            issues.append(
                ConfigIssue(
                    str(document.path),
                    ".".join(location),
                    f"environment variable '{variable}' is not set",
                    document.line_of(location),
                )
            )
            return ""
        return environ[variable]

    return _ENV_REFERENCE.sub(replace, value)
