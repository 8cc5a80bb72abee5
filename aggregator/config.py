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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from aggregator.errors import ConfigError, ConfigIssue
from aggregator.yamlfile import read_yaml

SERVER_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Settings(BaseSettings):
    """Process-wide settings of one gateway instance."""

    model_config = SettingsConfigDict(env_prefix="MCP_AGGREGATOR_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    servers_file: Path = Path("configs/servers.yaml")
    public_url: str | None = Field(default=None, description="The URL clients use, when behind a proxy.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    connect_timeout: float = Field(default=20.0, gt=0, description="Seconds to connect to and list one upstream.")
    health_interval: float = Field(default=15.0, gt=0, description="Seconds between liveness probes of an upstream.")
    backoff_initial: float = Field(default=0.5, gt=0, description="First reconnect delay, in seconds.")
    backoff_max: float = Field(default=30.0, gt=0, description="Longest reconnect delay, in seconds.")

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
        return _validated(Settings, "<environment>", overrides)
    if not config_file.is_file():
        raise ConfigError([ConfigIssue(str(config_file), "", "file not found")])
    read_yaml(config_file)  # reports syntax errors with their line before pydantic sees the file

    class FileSettings(Settings):
        model_config = SettingsConfigDict(yaml_file=config_file)

    settings = _validated(FileSettings, str(config_file), overrides)
    if not settings.servers_file.is_absolute() and "servers_file" not in overrides:
        settings = settings.model_copy(update={"servers_file": config_file.parent / settings.servers_file})
    return Settings.model_validate(settings.model_dump())


def _validated(cls: type[Settings], source: str, overrides: dict[str, Any]) -> Settings:
    try:
        return cls(**overrides)
    except ValidationError as error:
        raise ConfigError(
            [ConfigIssue(source, ".".join(str(p) for p in e["loc"]), e["msg"]) for e in error.errors()]
        ) from None


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
            location = tuple(p for p in location if p not in ("stdio", "streamable-http", "sse") or p == location[-1])
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
