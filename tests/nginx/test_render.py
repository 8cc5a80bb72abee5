"""Rendering and installing, checked by the real `nginx -t`: TLS, left-out servers, refusals."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aggregator.config.settings import Settings
from aggregator.errors import NginxError
from aggregator.nginx import NginxControl, NginxPaths, apply, render
from aggregator.registry.models import ServersFile
from tests.nginx.harness import nginx_settings, requires_nginx

pytestmark = requires_nginx


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (directory / "key.pem").write_bytes(pem)
    return directory / "cert.pem", directory / "key.pem"


def settings_for(directory: Path, **nginx: Any) -> Settings:
    return Settings.model_validate({"data_dir": directory / "data", "nginx": nginx_settings(8443, **nginx)})


SERVERS = ServersFile.model_validate(
    {
        "servers": {
            "weather": {"transport": "streamable-http", "url": "http://127.0.0.1:8101/mcp"},
            "legacy": {"transport": "sse", "url": "https://127.0.0.1:9443/base/sse", "headers": {"X-Api-Key": "k"}},
            "notes": {"transport": "stdio", "command": "python"},
            "off": {"transport": "streamable-http", "url": "http://127.0.0.1:1/mcp", "enabled": False},
            "messages": {"transport": "streamable-http", "url": "http://127.0.0.1:2/mcp"},
            "cloud": {
                "transport": "streamable-http",
                "url": "http://127.0.0.1:3/mcp",
                "auth": {"type": "aws-sigv4", "service": "execute-api", "region": "eu-west-1"},
            },
        }
    }
)


def test_a_tls_config_with_every_kind_of_server_passes_nginx_t(tmp_path: Path) -> None:
    certificate, key = self_signed(tmp_path)
    settings = settings_for(
        tmp_path, listen="127.0.0.1:8443", tls_certificate=str(certificate), tls_certificate_key=str(key)
    )
    control = NginxControl("nginx", NginxPaths.from_settings(settings))
    outcome, text = apply(settings, SERVERS, control, reload=False)
    assert outcome.passthrough == ("weather", "legacy")
    assert outcome.skipped == {
        "notes": "a stdio server has no URL to proxy to",
        "off": "disabled",
        "messages": "the path /messages/ belongs to the gateway",
        "cloud": "nginx cannot obtain aws-sigv4 credentials; use the aggregated endpoint",
    }
    assert "listen 127.0.0.1:8443 ssl http2;" in text
    assert 'sub_filter "data: /base/" "data: /legacy/";' in text
    assert NginxPaths.from_settings(settings).config_file.stat().st_mode & 0o777 == 0o600


def test_a_header_value_nginx_cannot_carry_is_refused_with_the_culprit(tmp_path: Path) -> None:
    servers = ServersFile.model_validate(
        {"servers": {"x": {"transport": "sse", "url": "http://127.0.0.1:1/sse", "headers": {"X-Key": "a$b"}}}}
    )
    with pytest.raises(NginxError, match=r"Server 'x': the value of header 'X-Key' holds '\$'"):
        render(settings_for(tmp_path), servers)


def test_the_stdout_render_is_the_text_that_gets_installed(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    control = NginxControl("nginx", NginxPaths.from_settings(settings))
    _, installed = apply(settings, SERVERS, control, reload=False)
    assert render(settings, SERVERS).text == installed == control.installed()
    again, _ = apply(settings, SERVERS, control, reload=False)
    assert not again.changed
    assert json.dumps(again.skipped)  # reported every time, not only on change


def location(text: str, path: str) -> list[str]:
    """The directives of `location = path` (or `location path`) in a rendered config."""
    block = text.split(f"location {'' if path.endswith('/') else '= '}{path} {{", 1)[1].split("}", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if not line.strip().startswith("#")]


def test_the_management_endpoint_is_routed_to_the_gateway_like_the_aggregated_one(tmp_path: Path) -> None:
    text = render(settings_for(tmp_path), SERVERS).text

    assert location(text, "/mcp/admin") == location(text, "/mcp")
    assert "proxy_pass http://mcp_gateway;" in location(text, "/mcp/admin")


def test_replicas_sharing_sessions_never_get_a_request_sent_twice(tmp_path: Path) -> None:
    """Alone, a legacy session finds its replica by the 404 hop, which makes nginx send again a POST whose
    replica died before answering; replicas sharing sessions through Redis adopt them instead, so nginx moves
    a streamable-HTTP request on only when it could not reach its replica (the old SSE transport keeps the hop)."""
    hop = "proxy_next_upstream error timeout http_404 non_idempotent;"
    alone = settings_for(tmp_path / "alone")
    shared = Settings.model_validate(
        {**alone.model_dump(), "data_dir": tmp_path / "shared", "cluster": {"redis_url": "redis://127.0.0.1:1/0"}}
    )
    for settings, aggregated in ((alone, hop), (shared, "proxy_next_upstream error timeout;")):
        _, text = apply(settings, SERVERS, NginxControl("nginx", NginxPaths.from_settings(settings)), reload=False)
        assert aggregated in location(text, "/mcp") and aggregated in location(text, "/mcp/admin")
        assert hop in location(text, "/sse") and hop in location(text, "/messages/")
