"""Settings and configuration-file models: the only place that reads the environment or config files.

`Settings` comes from (highest priority first) command-line overrides, `MCP_AGGREGATOR_*`
environment variables, the gateway YAML file, and defaults. `servers.yaml` holds the registered
upstreams as a discriminated union on `transport`. Everything else in the gateway receives these
frozen objects as arguments.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from aggregator.errors import ConfigError, ConfigIssue
from aggregator.yamlfile import read_yaml

SERVER_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
_UNION_TAGS = frozenset({"stdio", "streamable-http", "sse", "bearer", "oauth2-client-credentials", "aws-sigv4"})
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class GatewayKeySettings(BaseModel):
    """One HS256 key for gateway-minted tokens. Give the secret inline, or better from env/file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kid: str = Field(min_length=1)
    secret: SecretStr | None = None
    secret_env: str | None = None
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> GatewayKeySettings:
        if sum(x is not None for x in (self.secret, self.secret_env, self.secret_file)) != 1:
            raise ValueError(f"key '{self.kid}' needs exactly one of secret, secret_env, secret_file")
        return self

    def resolved(self, environ: Mapping[str, str]) -> GatewayKeySettings:
        """This key with `secret` filled in from `secret_env` or `secret_file`."""
        if self.secret is not None:
            value = self.secret.get_secret_value()
        elif self.secret_env is not None:
            if self.secret_env not in environ:
                raise ValueError(f"environment variable '{self.secret_env}' (key '{self.kid}') is not set")
            value = environ[self.secret_env]
        else:
            assert self.secret_file is not None
            value = self.secret_file.read_text(encoding="utf-8").strip()
        if len(value.encode()) < 32:
            raise ValueError(f"key '{self.kid}' is shorter than 32 bytes")
        return GatewayKeySettings(kid=self.kid, secret=SecretStr(value))


class OidcIssuerSettings(BaseModel):
    """An identity provider whose access tokens the gateway accepts (Cognito, Keycloak, Entra, Auth0, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(min_length=1, description="Exactly the token's `iss`.")
    audiences: tuple[str, ...] = Field(default=(), description="Accepted `aud` values; empty: not checked.")
    client_ids: tuple[str, ...] = Field(default=(), description="Accepted client ids (Cognito has no `aud`).")
    algorithms: tuple[Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"], ...] = ("RS256",)
    groups_claim: str = "groups"
    scope_claim: str = "scope"
    token_use: str | None = Field(default=None, description="Required `token_use` (Cognito: access).")
    jwks_uri: str | None = Field(default=None, description="Skips discovery when given.")
    jwks_refetch_interval: float = Field(default=30.0, gt=0, description="At most one refetch per interval.")


class AuthSettings(BaseModel):
    """Who may call the gateway, and how their tokens are checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(default="mcp-aggregator", description="`iss` of gateway-minted tokens.")
    audience: str = Field(default="mcp-aggregator", description="`aud` of gateway-minted tokens.")
    gateway_keys: tuple[GatewayKeySettings, ...] = Field(default=(), description="First one signs; all verify.")
    oidc_issuers: tuple[OidcIssuerSettings, ...] = ()
    authorization_servers: tuple[str, ...] = Field(default=(), description="Advertised in the RFC 9728 metadata.")
    max_token_bytes: int = Field(default=16384, gt=0)
    max_token_ttl: int = Field(default=86400, gt=0, description="Longest lifetime of a minted token, in seconds.")

    @property
    def enabled(self) -> bool:
        """Whether any verifier is configured."""
        return bool(self.gateway_keys or self.oidc_issuers)


class Settings(BaseSettings):
    """Process-wide settings of one gateway instance."""

    model_config = SettingsConfigDict(
        env_prefix="MCP_AGGREGATOR_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    servers_file: Path = Path("configs/servers.yaml")
    public_url: str | None = Field(default=None, description="The URL clients use, when behind a proxy.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    connect_timeout: float = Field(default=20.0, gt=0, description="Seconds to connect to and list one upstream.")
    health_interval: float = Field(default=15.0, gt=0, description="Seconds between liveness probes of an upstream.")
    backoff_initial: float = Field(default=0.5, gt=0, description="First reconnect delay, in seconds.")
    backoff_max: float = Field(default=30.0, gt=0, description="Longest reconnect delay, in seconds.")
    data_dir: Path = Field(default=Path("data"), description="Revocation list, audit log, search index.")
    scopes_file: Path | None = Field(default=None, description="scopes.yml (mcp-gateway-registry format).")
    scopes_reload_interval: float = Field(default=1.0, gt=0, description="Seconds between checks for edits.")
    gateway_server_name: str = Field(default="mcpgw", description="The server name scopes.yml uses for our tools.")
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit_per_second: float = Field(default=50.0, ge=0, description="Per principal; 0 turns limits off.")
    rate_limit_burst: int = Field(default=100, ge=1)
    audit_log: bool = Field(default=True, description="Write data_dir/audit.log (JSON lines, rotated).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build `Settings` from `config_file` (YAML, optional), the environment and explicit overrides.

    A relative `servers_file` in the YAML file is taken relative to that file's folder.
    """
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if config_file is None:
        return _resolve_secrets(_validated(Settings, "<environment>", overrides), "<environment>")
    if not config_file.is_file():
        raise ConfigError([ConfigIssue(str(config_file), "", "file not found")])
    read_yaml(config_file)  # reports syntax errors with their line before pydantic sees the file

    class FileSettings(Settings):
        model_config = SettingsConfigDict(yaml_file=config_file)

    settings = _validated(FileSettings, str(config_file), overrides)
    relative = {
        key: config_file.parent / value
        for key in ("servers_file", "scopes_file", "data_dir")
        if isinstance(value := getattr(settings, key), Path) and not value.is_absolute() and key not in overrides
    }
    return _resolve_secrets(Settings.model_validate({**settings.model_dump(), **relative}), str(config_file))


def _resolve_secrets(settings: Settings, source: str) -> Settings:
    try:
        keys = tuple(key.resolved(os.environ) for key in settings.auth.gateway_keys)
    except (ValueError, OSError) as error:
        raise ConfigError([ConfigIssue(source, "auth.gateway_keys", str(error))]) from None
    return settings.model_copy(update={"auth": settings.auth.model_copy(update={"gateway_keys": keys})})


def _validated(cls: type[Settings], source: str, overrides: dict[str, Any]) -> Settings:
    try:
        return cls(**overrides)
    except ValidationError as error:
        raise ConfigError(
            [ConfigIssue(source, ".".join(str(p) for p in e["loc"]), e["msg"]) for e in error.errors()]
        ) from None


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
    timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for any one request.")
    description: str = ""
    tags: tuple[str, ...] = ()
    prefix: Annotated[str, Field(pattern=r"^$|^[a-z0-9][a-z0-9-]{0,31}$")] | None = Field(
        default=None, description="Namespace of exported names; default: the server name; '' for none."
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


UpstreamSpec = Annotated[StdioUpstream | StreamableHttpUpstream | SseUpstream, Field(discriminator="transport")]


class ServersFile(BaseModel):
    """The contents of `servers.yaml`: registered upstreams by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    servers: dict[Annotated[str, Field(pattern=SERVER_NAME_PATTERN)], UpstreamSpec] = Field(default_factory=dict)

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


def exported_prefix(name: str, spec: StdioUpstream | StreamableHttpUpstream | SseUpstream) -> str:
    """The namespace under which a server's capabilities are exported."""
    return name if spec.prefix is None else spec.prefix


def load_servers(path: Path, environ: Mapping[str, str] | None = None) -> ServersFile:
    """Read and validate `servers.yaml`, reporting every problem with its file, path, line and reason.

    `${VAR}` in header values, env values and args is replaced from the environment, so secrets
    stay out of the file; a missing variable is a configuration error.
    """
    environ = os.environ if environ is None else environ
    document = read_yaml(path)
    data = document.data if document.data is not None else {}
    issues: list[ConfigIssue] = []
    data = _expand_env(data, (), environ, document, issues)
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
            issues.append(ConfigIssue(str(path), ".".join(location), message, document.line_of(location)))
    if issues:
        raise ConfigError(issues)
    return servers


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
