"""Settings and configuration-file models: the only place that reads the environment or config files.

`Settings` comes from (highest priority first) command-line overrides, `MCP_AGGREGATOR_*`
environment variables, the gateway YAML file, and defaults. `servers.yaml` holds the registered
upstreams as a discriminated union on `transport`. Everything else in the gateway receives these
frozen objects as arguments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from aggregator.config.cluster import ClusterSettings
from aggregator.config.stdio import StdioTemplate
from aggregator.config.tasks import TasksSettings
from aggregator.config.yamlfile import read_yaml
from aggregator.errors import ConfigError, ConfigIssue


class GatewayKeySettings(BaseModel):
    """One HS256 key for gateway-minted tokens. Give the secret inline, or better from env/file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kid: str = Field(min_length=1, description="Key id, written into each token's header (`kid`).")
    secret: SecretStr | None = Field(default=None, description="The secret itself (32+ bytes); prefer secret_env.")
    secret_env: str | None = Field(default=None, description="An environment variable that holds the secret.")
    secret_file: Path | None = Field(default=None, description="A file that holds the secret.")

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
    algorithms: tuple[Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"], ...] = Field(
        default=("RS256",), description="Accepted signature algorithms."
    )
    groups_claim: str = Field(default="groups", description="The claim with the caller's groups (scopes.yml).")
    scope_claim: str = Field(default="scope", description="The claim with the caller's scopes.")
    token_use: str | None = Field(default=None, description="Required `token_use` (Cognito: access).")
    jwks_uri: str | None = Field(default=None, description="Skips discovery when given.")
    jwks_refetch_interval: float = Field(default=30.0, gt=0, description="At most one refetch per interval.")


class AuthSettings(BaseModel):
    """Who may call the gateway, and how their tokens are checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(default="mcp-aggregator", description="`iss` of gateway-minted tokens.")
    audience: str = Field(default="mcp-aggregator", description="`aud` of gateway-minted tokens.")
    gateway_keys: tuple[GatewayKeySettings, ...] = Field(default=(), description="First one signs; all verify.")
    oidc_issuers: tuple[OidcIssuerSettings, ...] = Field(default=(), description="Identity providers accepted.")
    authorization_servers: tuple[str, ...] = Field(default=(), description="Advertised in the RFC 9728 metadata.")
    max_token_bytes: int = Field(default=16384, gt=0, description="Longer bearer tokens are refused unread.")
    max_token_ttl: int = Field(default=86400, gt=0, description="Longest lifetime of a minted token, in seconds.")
    max_delegation_depth: int = Field(
        default=1,
        ge=0,
        le=8,
        description="How many generate_token steps may separate a token from its root: 1, a minted token cannot "
        "mint again; 0, generate_token is refused. Deeper tokens are refused, also when this is lowered later.",
    )

    @property
    def enabled(self) -> bool:
        """Whether any verifier is configured."""
        return bool(self.gateway_keys or self.oidc_issuers)


class NginxSettings(BaseModel):
    """The nginx in front of the gateway: per-server passthrough and replicas (`mcp-aggregator nginx ...`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    binary: str = Field(default="nginx", description="The nginx executable (validation, reload).")
    prefix: Path | None = Field(default=None, description="nginx -p: logs, pid and temp files; default data_dir/nginx.")
    config_file: Path | None = Field(
        default=None, description="Where the rendered config goes; default prefix/nginx.conf."
    )
    templates_dir: Path | None = Field(default=None, description="Default: the repository's nginx/ folder.")
    listen: str = Field(default="127.0.0.1:8080", description="nginx `listen` address for clients.")
    server_name: str = Field(default="_", description="nginx `server_name`; '_' matches any host.")
    tls_certificate: Path | None = Field(default=None, description="PEM chain; with the key, nginx serves TLS.")
    tls_certificate_key: Path | None = Field(default=None, description="PEM private key of tls_certificate.")
    gateway_replicas: tuple[str, ...] = Field(
        default=(), description="host:port of every gateway replica; default: this gateway's host:port."
    )
    user: str | None = Field(default=None, description="Worker user when nginx starts as root.")
    worker_processes: int | Literal["auto"] = Field(default="auto", description="nginx `worker_processes`.")
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Largest request body through passthrough.")
    stream_timeout: float = Field(default=3600.0, gt=0, description="Seconds an idle response stream stays open.")
    reload_debounce: float = Field(default=2.0, ge=0, description="At most one reload per this many seconds.")
    manage: bool = Field(default=False, description="Re-render and reload nginx on every registry change.")
    auth_cache_ttl: int = Field(
        default=5, ge=0, description="Seconds nginx reuses an allow of /auth/validate (capped by token exp); 0: off."
    )
    auth_cache_dir: Path | None = Field(
        default=None, description="Where nginx keeps cached allows (keys hold tokens); default prefix/cache/auth."
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> NginxSettings:
        if (self.tls_certificate is None) != (self.tls_certificate_key is None):
            raise ValueError("tls_certificate and tls_certificate_key go together")
        return self


class LimitsSettings(BaseModel):
    """Bounds that keep one caller or one upstream from hurting the others."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0, description="Largest HTTP request body.")
    max_json_depth: int = Field(default=64, gt=0, description="Deepest nesting of a JSON-RPC message.")
    max_batch_length: int = Field(default=32, gt=0, description="Most messages in one JSON-RPC batch.")
    max_json_tokens: int = Field(
        default=250_000, gt=0, description="Most strings, brackets and commas in one request body (parse cost)."
    )
    max_argument_bytes: int = Field(default=1024 * 1024, gt=0, description="Largest tool arguments (JSON).")
    max_result_bytes: int = Field(default=8 * 1024 * 1024, gt=0, description="Largest upstream answer.")
    max_calls_per_principal: int = Field(default=32, gt=0, description="Concurrent calls of one principal.")
    max_calls_per_upstream: int = Field(default=64, gt=0, description="Concurrent calls to one upstream.")
    max_sessions: int = Field(default=10_000, gt=0, description="Open 2025-11-25 sessions, all callers.")
    session_idle_timeout: float = Field(default=1800.0, gt=0, description="Seconds before an idle session ends.")
    circuit_failures: int = Field(default=5, gt=0, description="Consecutive failures that open a circuit.")
    circuit_cooldown: float = Field(default=10.0, gt=0, description="Seconds a circuit stays open.")


class Settings(BaseSettings):
    """Process-wide settings of one gateway instance."""

    model_config = SettingsConfigDict(
        env_prefix="MCP_AGGREGATOR_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    host: str = Field(default="127.0.0.1", description="Address `serve` binds; beyond loopback: auth and public_url.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `serve` binds; 0 picks a free one.")
    servers_file: Path = Field(default=Path("configs/servers.yaml"), description="The registered upstreams.")
    public_url: str | None = Field(default=None, description="The URL clients use, when behind a proxy.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Least severe logged.")
    shutdown_grace: int = Field(default=10, ge=0, le=600, description="Seconds SIGTERM lets calls in flight finish.")
    connect_timeout: float = Field(default=20.0, gt=0, description="Seconds to connect to and list one upstream.")
    health_interval: float = Field(default=15.0, gt=0, description="Seconds between liveness probes of an upstream.")
    backoff_initial: float = Field(default=0.5, gt=0, description="First reconnect delay, in seconds.")
    backoff_max: float = Field(default=30.0, gt=0, description="Longest reconnect delay, in seconds.")
    data_dir: Path = Field(default=Path("data"), description="Revocation list, audit log, search index.")
    scopes_file: Path | None = Field(default=None, description="scopes.yml (mcp-gateway-registry format).")
    scopes_reload_interval: float = Field(default=1.0, gt=0, description="Seconds between checks for edits.")
    gateway_server_name: str = Field(default="mcpgw", description="The server name scopes.yml uses for our tools.")
    servers_reload_interval: float = Field(default=1.0, gt=0, description="Seconds between checks for hand edits.")
    admin_allowed_networks: tuple[IPvAnyNetwork, ...] = Field(
        default=(),
        description="Networks (CIDR) that servers registered through register_service may reach although they are "
        "loopback, link-local, private or otherwise not public, e.g. 10.20.0.0/16. Checked on every connection; "
        "the gateway's own listeners are never allowed. Servers in the operator's servers.yaml are not checked.",
    )
    stdio_templates: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")], StdioTemplate] = Field(
        default_factory=dict,
        description="The only stdio servers register_service may start: a caller names a template and fills its "
        "slots; it never gives a command line.",
    )
    host_server_name: str = Field(default="aggregator", description="The name hosts give this gateway.")
    name_budget: int = Field(default=64, gt=0, description="Longest `mcp__<host_server_name>__<tool>` hosts accept.")
    search_uri: str | None = Field(default=None, description="LanceDB URI of the tool index; default data_dir/index.")
    search_model: str | None = Field(default=None, description="sentence-transformers model name or path.")
    search_learning: bool = Field(
        default=False,
        description="Learn from use: a tool called right after a finder answer ranks a little higher for the same "
        "query next time (bounded, decaying, stored without principals or queries in data_dir/finder-prior.json). "
        "Off by default: the prior is shared by all callers, so in a multi-tenant gateway one tenant's calls would "
        "reorder, and hint at, another's results; turn it on where callers trust each other (docs/finder.md).",
    )
    discovery_mode: bool = Field(default=False, description="List only the finder tools (also: /mcp?tools=discover).")
    management_tools_on_mcp: bool = Field(
        default=False,
        description="Also offer the management tools (register_service, generate_token...) on /mcp, /sse and stdio, "
        "for clients that predate /mcp/admin; by default they are served on /mcp/admin only, away from agents' models.",
    )
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Who may call, and how tokens are checked.")
    limits: LimitsSettings = Field(default_factory=LimitsSettings, description="Request, call and session bounds.")
    rate_limit_per_second: float = Field(default=50.0, ge=0, description="Per principal; 0 turns limits off.")
    rate_limit_burst: int = Field(default=100, ge=1, description="Calls a principal may make at once after a pause.")
    audit_log: bool = Field(default=True, description="Write data_dir/audit.log (JSON lines, rotated).")
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without a token; otherwise it needs UI list_service for all."
    )
    lean_path: bool = Field(
        default=True,
        description="Serve tools/call and tools/list below the SDK's session layers (same decisions and answers, "
        "about half the hop's cost); false sends every request the SDK way.",
    )
    nginx: NginxSettings = Field(default_factory=NginxSettings, description="The nginx in front (`nginx` command).")
    cluster: ClusterSettings = Field(
        default_factory=ClusterSettings, description="Replicas sharing rate limits and revocations (Redis)."
    )
    tasks: TasksSettings = Field(default_factory=TasksSettings, description="The tasks extension (SEP-2663).")

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: Any) -> Any:
        replaced = {
            "admin_allow_link_local": "admin_allowed_networks (a list of CIDR networks)",
            "admin_stdio_commands": "stdio_templates (commands with named, validated slots)",
        }
        if isinstance(data, dict) and (old := sorted(replaced.keys() & data.keys())):
            raise ValueError("; ".join(f"{name} was replaced by {replaced[name]}" for name in old))
        return data

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


class LoginSettings(BaseSettings):
    """`mcp-aggregator login`: where a user signs in and where the tokens go.

    Flags override `MCP_AGGREGATOR_LOGIN_*` environment variables. `token_file` is written with
    mode 0600; `redirect_port` 0 picks a free loopback port (RFC 8252 lets the port vary).
    """

    model_config = SettingsConfigDict(env_prefix="MCP_AGGREGATOR_LOGIN_", frozen=True, extra="forbid")

    issuer: str | None = Field(
        default=None, description="The authorization server; OIDC discovery finds its endpoints."
    )
    client_id: str | None = Field(default=None, description="The public (native) client registered for this CLI.")
    scopes: tuple[str, ...] = Field(default=(), description="Scopes to request (default: the issuer's).")
    resource: str | None = Field(
        default=None, description="RFC 8707 resource indicator: the gateway's URL or audience."
    )
    token_file: Path = Field(
        default_factory=lambda: Path.home() / ".config" / "mcp-aggregator" / "tokens.json",
        description="Where the tokens are stored (mode 0600).",
    )
    redirect_port: int = Field(default=0, ge=0, le=65535, description="Loopback port of the redirect; 0: a free one.")
    timeout: float = Field(default=300.0, gt=0, description="Seconds to wait for the browser to come back.")


def load_login_settings(**overrides: Any) -> LoginSettings:
    """`LoginSettings` from the environment and explicit overrides (None means: not given)."""
    overrides = {key: value for key, value in overrides.items() if value is not None}
    try:
        return LoginSettings(**overrides)
    except ValidationError as error:
        raise ConfigError(
            [ConfigIssue("<login>", ".".join(str(p) for p in e["loc"]), e["msg"]) for e in error.errors()]
        ) from None
