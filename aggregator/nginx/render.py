"""Rendering: settings + servers.yaml -> the text of one nginx config, from the templates in `nginx/`.

Rendering is pure (no files written, no processes started), so the same text can be printed,
validated, compared with the running config and installed. Templates use `{{name}}` placeholders,
which cannot be confused with nginx's own `$variables` and `{ blocks }`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aggregator.config.settings import NginxSettings, Settings
from aggregator.errors import NginxError
from aggregator.nginx.cache import cache_values
from aggregator.policy.addresses import AddressPolicy, unchecked_proxy_refusal
from aggregator.registry.models import (
    AnyUpstream,
    BearerAuthSettings,
    OpenApiUpstream,
    ServersFile,
    SseUpstream,
    StdioUpstream,
    StreamableHttpUpstream,
)

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parents[2] / "nginx"
MAIN_TEMPLATE = "mcp-aggregator.conf.template"
PASSTHROUGH_TEMPLATE = "passthrough.conf.template"
UPSTREAM_TEMPLATE = "upstream.conf.template"

IDENTITY_VARIABLES = {
    "X-User": "$mcp_user",
    "X-Username": "$mcp_username",
    "X-Client-Id": "$mcp_client_id",
    "X-Scopes": "$mcp_scopes",
    "X-Auth-Method": "$mcp_auth_method",
    "X-Server-Name": "$mcp_server",
    "X-Tool-Name": "$mcp_tool_name",
}
# Paths the gateway itself serves through nginx; a server of the same name would shadow them.
RESERVED_NAMES = frozenset({"messages", "mcp", "sse"})
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
_UNIX_SOCKET_PATH_MAX = 107


@dataclass(frozen=True, slots=True)
class NginxPaths:
    """Where one nginx instance keeps its config, pid, logs and temp files (all absolute)."""

    prefix: Path
    config_file: Path
    body_socket: Path
    auth_cache: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> NginxPaths:
        nginx = settings.nginx
        prefix = (nginx.prefix or settings.data_dir / "nginx").resolve()
        config_file = (nginx.config_file or prefix / "nginx.conf").resolve()
        auth_cache = (nginx.auth_cache_dir or prefix / "cache" / "auth").resolve()
        return cls(prefix, config_file, prefix / "run" / "mcp-body.sock", auth_cache)

    def directories(self) -> list[Path]:
        """The folders nginx expects to exist before it starts."""
        temp = self.prefix / "tmp"
        return [
            self.prefix / "logs",
            self.prefix / "run",
            self.config_file.parent,
            self.auth_cache.parent,  # nginx makes the cache folder itself: 0700, the workers' own
            *(temp / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
        ]


@dataclass(frozen=True, slots=True)
class RenderedConfig:
    """The text of a config, which servers it passes through, and which it had to leave out (and why)."""

    text: str
    passthrough: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)


def render(settings: Settings, servers: ServersFile, paths: NginxPaths | None = None) -> RenderedConfig:
    """The nginx config for `servers`: a passthrough location per enabled HTTP upstream, the gateway behind it."""
    paths = paths or NginxPaths.from_settings(settings)
    nginx = settings.nginx
    templates = nginx.templates_dir or TEMPLATES
    if len(str(paths.body_socket)) > _UNIX_SOCKET_PATH_MAX:
        raise NginxError(f"The nginx prefix {paths.prefix} is too long for a unix socket path; choose a shorter one.")
    locations: list[str] = []
    upstreams: list[str] = []
    passthrough: list[str] = []
    skipped: dict[str, str] = {}
    addresses = AddressPolicy.from_settings(settings)
    for name, spec in servers.servers.items():
        reason = _unsupported(name, spec, addresses)
        if reason is not None:
            skipped[name] = reason
            continue
        assert isinstance(spec, StreamableHttpUpstream | SseUpstream)
        values = _passthrough_values(name, spec)
        locations.append(_fill(templates / PASSTHROUGH_TEMPLATE, values))
        upstreams.append(_fill(templates / UPSTREAM_TEMPLATE, values))
        passthrough.append(name)
    replicas = nginx.gateway_replicas or (f"{_bracketed(settings.host)}:{settings.port}",)
    text = _fill(
        templates / MAIN_TEMPLATE,
        {
            "prefix": str(paths.prefix),
            "config_file": str(paths.config_file),
            "user": f"user {nginx.user};" if nginx.user else "",
            "worker_processes": str(nginx.worker_processes),
            "stream_timeout": f"{nginx.stream_timeout:g}",
            "max_body_bytes": str(nginx.max_body_bytes),
            "gateway_servers": "\n".join(f"        server {replica};" for replica in replicas),
            "gateway_next_upstream": _gateway_next_upstream(settings),
            "body_socket": str(paths.body_socket),
            "listen": nginx.listen + (" ssl http2" if nginx.tls_certificate else ""),
            "server_name": nginx.server_name,
            "tls": _tls(nginx),
            "passthrough_upstreams": "".join(upstreams),
            "passthrough_locations": "".join(locations),
            **cache_values(settings, paths.auth_cache),
        },
    )
    return RenderedConfig(text, tuple(passthrough), skipped)


def _gateway_next_upstream(settings: Settings) -> str:
    """When nginx sends a streamable-HTTP request to the next replica (`proxy_next_upstream`): on a failed
    connect always; on a 404, and after a replica died with the request sent, only when the replicas do not
    share sessions (the 404 hop is then how a session reaches its replica, and it needs `non_idempotent`)."""
    if settings.cluster.enabled:
        return "error timeout"
    return "error timeout http_404 non_idempotent"


def _unsupported(name: str, spec: AnyUpstream, addresses: AddressPolicy) -> str | None:
    """Why `spec` gets no passthrough location, or None when it gets one."""
    if not spec.enabled:
        return "disabled"
    if isinstance(spec, StdioUpstream):
        return "a stdio server has no URL to proxy to"
    if isinstance(spec, OpenApiUpstream):
        return "an openapi server is a REST service, served as MCP by the aggregated endpoint only"
    if spec.registered_by is not None and (refusal := unchecked_proxy_refusal(spec.url, addresses)) is not None:
        return refusal  # a caller's URL: nginx may connect only where the gateway itself would
    if name in RESERVED_NAMES:
        return f"the path /{name}/ belongs to the gateway"
    if spec.auth is not None and not isinstance(spec.auth, BearerAuthSettings):
        return f"nginx cannot obtain {spec.auth.type} credentials; use the aggregated endpoint"
    if spec.forward_caller_token and (spec.auth is not None or _has_header(spec.headers, "Authorization")):
        return "forward_caller_token conflicts with the server's own Authorization"
    return None


def _passthrough_values(name: str, spec: StreamableHttpUpstream | SseUpstream) -> dict[str, str]:
    url = urlsplit(spec.url)
    try:
        port = url.port
    except ValueError:
        raise NginxError(f"Server '{name}': the URL {spec.url} has an invalid port.") from None
    base_path = url.path.rsplit("/", 1)[0] + "/"
    extra = [f"proxy_set_header {header} {_quoted(name, header, value)};" for header, value in spec.headers.items()]
    if url.scheme == "https":
        extra += ["proxy_ssl_server_name on;", f"proxy_ssl_name {url.hostname};"]
    if isinstance(spec, SseUpstream):
        # The SSE transport announces its POST endpoint as an absolute path of the upstream's:
        # point it back under this server's prefix (and keep the stream uncompressed to do so).
        extra += [
            'proxy_set_header Accept-Encoding "";',
            "sub_filter_types text/event-stream;",
            f'sub_filter "data: {base_path}" "data: /{name}/";',
        ]
    if spec.forward_caller_token:
        authorization = "$http_authorization"
    elif isinstance(spec.auth, BearerAuthSettings) and spec.auth.token is not None:
        authorization = _quoted(name, "Authorization", f"Bearer {spec.auth.token.get_secret_value()}")
    else:
        authorization = '""'
    default_port = 443 if url.scheme == "https" else 80
    values = {
        "server": name,
        "transport": spec.transport,
        "url": f"{url.scheme}://{url.netloc}{url.path}",
        "base_path": base_path,
        "scheme": url.scheme,
        "host": url.netloc,
        "address": f"{_bracketed(url.hostname or '')}:{port or default_port}",
        "authorization": authorization,
        "extra": "".join(f"            {line}\n" for line in extra),
    }
    for header, variable in IDENTITY_VARIABLES.items():
        key = header.lower().replace("-", "_")
        values[key] = variable if header in spec.identity_headers else '""'
    return values


def _tls(nginx: NginxSettings) -> str:
    if nginx.tls_certificate is None or nginx.tls_certificate_key is None:
        return ""
    return (
        f"        ssl_certificate {nginx.tls_certificate.resolve()};\n"
        f"        ssl_certificate_key {nginx.tls_certificate_key.resolve()};\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        "        ssl_session_cache shared:mcp_tls:10m;\n"
    )


def _quoted(server: str, header: str, value: str) -> str:
    """`value` as an nginx string, or `NginxError` when nginx could not carry it verbatim."""
    if not _HEADER_NAME.match(header):
        raise NginxError(f"Server '{server}': header name {header!r} is not a valid HTTP header name.")
    if "$" in value or any(ord(c) < 32 for c in value):
        raise NginxError(f"Server '{server}': the value of header '{header}' holds '$' or control characters.")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _has_header(headers: dict[str, str], name: str) -> bool:
    return any(key.lower() == name.lower() for key in headers)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _fill(template: Path, values: dict[str, str]) -> str:
    """`template` with every `{{name}}` replaced; a name without a value is a bug in the template."""
    try:
        text = template.read_text(encoding="utf-8")
    except OSError as error:
        raise NginxError(f"The nginx template {template} cannot be read: {error.strerror}.") from None

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise NginxError(f"The nginx template {template} uses '{{{{{name}}}}}', which the renderer does not know.")
        return values[name]

    return _PLACEHOLDER.sub(value, text)
