"""Class 10: what anonymous callers can learn.

- `/readyz` gives anyone the readiness only (`{"ready": bool}`, 200/503); upstream names, states,
  errors (which may hold URLs) and policy/registry errors need a token whose UI-Scopes grant
  `list_service` for `all`.
- The URLs the gateway hands out (401 challenges, RFC 9728 metadata, registry remotes) never come
  from the request's Host header: `public_url` when set, else the address the gateway is bound to
  (or a configured nginx listen address, when the Host names exactly that).
- `serve` refuses to listen beyond loopback without `public_url` (test_binding.py).
- A rejected request is logged as one structured line, never a traceback.
- Everything else an anonymous caller can reach says only what is documented.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import jwt
import pytest

from aggregator.config.logs import KeyValueFormatter
from aggregator.http.registry_openapi import openapi_document
from tests.harness import SECRET, LiveGateway, serve_gateway, token_for

pytestmark = pytest.mark.anyio

UPSTREAM = "hidden-upstream-7"  # a name anonymous callers must never see
DOWN = "broken-upstream-9"
SCOPES = """
group_mappings:
  users: [echo-calls]
  operators: [operations, echo-calls]
  echo-operators: [echo-operations, echo-calls]
UI-Scopes:
  operations:
    list_service: [all]
  echo-operations:
    list_service: [hidden-upstream-7]
    modify_service: [all]
echo-calls:
- server: "*"
  methods: ["*"]
  tools: ["*"]
"""
PUBLIC_URL = "https://mcp.example.com/gateway/mcp"
NGINX_LISTEN = "127.0.0.1:18443"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
async def ready(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[LiveGateway]:
    """Every upstream connected: /readyz says 200."""
    servers = {UPSTREAM: {"transport": "streamable-http", "url": echo_url}}
    async with serve_gateway(tmp_path_factory.mktemp("ready"), servers=servers, scopes=SCOPES) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def degraded(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[LiveGateway]:
    """One required upstream cannot be reached (its error names its URL): /readyz says 503."""
    servers = {
        UPSTREAM: {"transport": "streamable-http", "url": echo_url},
        DOWN: {
            "transport": "streamable-http",
            "url": f"http://127.0.0.1:{closed_port()}/mcp",
            "timeout": 1,
            "required": True,
        },
    }
    async with serve_gateway(tmp_path_factory.mktemp("degraded"), servers=servers, scopes=SCOPES) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def named(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[LiveGateway]:
    """A gateway with `public_url` set."""
    servers = {UPSTREAM: {"transport": "streamable-http", "url": echo_url}}
    directory = tmp_path_factory.mktemp("named")
    async with serve_gateway(directory, servers=servers, scopes=SCOPES, public_url=PUBLIC_URL) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def behind_nginx(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[LiveGateway]:
    """A gateway without `public_url` whose settings name the nginx in front of it (TLS)."""
    servers = {UPSTREAM: {"transport": "streamable-http", "url": echo_url}}
    directory = tmp_path_factory.mktemp("nginx")
    (directory / "cert.pem").write_text("unused")
    nginx = {
        "listen": NGINX_LISTEN,
        "tls_certificate": directory / "cert.pem",
        "tls_certificate_key": directory / "cert.pem",
    }
    async with serve_gateway(directory, servers=servers, scopes=SCOPES, nginx=nginx) as gateway:
        yield gateway


def expired_operator_token() -> str:
    """An operator's token, correctly signed, that expired an hour ago."""
    now = int(time.time())
    claims = {
        "iss": "mcp-aggregator",
        "aud": "mcp-aggregator",
        "sub": "old",
        "jti": "expired",
        "groups": ["operators"],
        "iat": now - 7200,
        "exp": now - 3600,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "tests"})


def authorization(caller: str) -> dict[str, str]:
    tokens = {
        "anonymous": None,
        "bad token": "not-a-jwt",
        "expired token": expired_operator_token(),
        "user": token_for("user", groups=["users"]),
        "list_service for one server": token_for("echo-op", groups=["echo-operators"]),
        "operator": token_for("op", groups=["operators"]),
    }
    token = tokens[caller]
    return {"authorization": f"Bearer {token}"} if token is not None else {}


CALLERS = ["anonymous", "bad token", "expired token", "user", "list_service for one server", "operator"]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("state", ["ready", "degraded"])
async def test_readyz_tells_anyone_the_status_and_only_operators_the_details(
    ready: LiveGateway, degraded: LiveGateway, state: str, caller: str
) -> None:
    live = ready if state == "ready" else degraded
    async with httpx2.AsyncClient(base_url=live.base, trust_env=False, headers=authorization(caller)) as http:
        response = await http.get("/readyz")
    assert response.status_code == (200 if state == "ready" else 503)
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    if caller != "operator":
        assert body == {"ready": state == "ready"}
        return
    assert body["ready"] is (state == "ready")
    assert set(body) == {"ready", "upstreams", "policy_error", "registry_error"}
    assert body["upstreams"][UPSTREAM]["state"] == "healthy"
    if state == "degraded":
        assert body["upstreams"][DOWN]["state"] == "unhealthy"
        assert "ConnectError" in body["upstreams"][DOWN]["error"]


HOSTS = [
    "evil.example",
    "evil.example:443",
    "127.0.0.1:1",
    "localhost",
    "[::1]:8000",
    "evil.example/.well-known/x?",
    'a"b, resource_metadata="http://evil.example',
]
PROTECTED = [
    ("POST", "/mcp"),
    ("GET", "/sse"),
    ("POST", "/messages/?session_id=" + "0" * 32),
    ("GET", "/v0.1/servers"),
    ("GET", "/metrics"),
    ("POST", "/auth/validate"),
]


async def challenge_of(live: LiveGateway, method: str, path: str, host: str) -> str:
    async with httpx2.AsyncClient(base_url=live.base, trust_env=False) as http:
        response = await http.request(method, path, headers={"host": host, "x-original-uri": "/mcp"})
    assert response.status_code == 401, response.text
    challenge: str = response.headers["www-authenticate"]
    return challenge


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("host", HOSTS)
async def test_a_challenge_names_the_bound_address_whatever_the_host_header_says(
    ready: LiveGateway, host: str, method: str, path: str
) -> None:
    challenge = await challenge_of(ready, method, path, host)
    assert f'resource_metadata="{ready.base}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert "evil" not in challenge and "localhost" not in challenge and ":1/" not in challenge


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("host", [*HOSTS, "mcp.example.com"])
async def test_with_public_url_a_challenge_names_it_whatever_the_host_header_says(
    named: LiveGateway, host: str, method: str, path: str
) -> None:
    challenge = await challenge_of(named, method, path, host)
    expected = "https://mcp.example.com/.well-known/oauth-protected-resource/gateway/mcp"
    if path == "/auth/validate":  # a passthrough location's metadata sits under its own path
        expected = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{expected}"' in challenge


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        (NGINX_LISTEN, f"https://{NGINX_LISTEN}"),  # the configured nginx address: its origin
        ("evil.example", None),
        (f"evil.example:{NGINX_LISTEN.rsplit(':', 1)[1]}", None),
        ("127.0.0.1:18444", None),
    ],
)
async def test_without_public_url_only_a_configured_nginx_address_may_be_named(
    behind_nginx: LiveGateway, host: str, origin: str | None
) -> None:
    expected = origin or behind_nginx.base
    for method, path in PROTECTED:
        challenge = await challenge_of(behind_nginx, method, path, host)
        assert f'resource_metadata="{expected}/.well-known/oauth-protected-resource/mcp"' in challenge


@pytest.mark.parametrize("host", HOSTS)
async def test_metadata_and_registry_remotes_name_the_bound_address(ready: LiveGateway, host: str) -> None:
    async with httpx2.AsyncClient(base_url=ready.base, trust_env=False, headers={"host": host}) as http:
        aggregated = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        passthrough = (await http.get("/.well-known/oauth-protected-resource/echo/mcp")).json()
        listed = await http.get("/v0.1/servers", headers=authorization("operator"))
    assert aggregated["resource"] == ready.url
    assert passthrough["resource"] == f"{ready.base}/echo/mcp"
    assert listed.status_code == 200
    assert [remote["url"] for server in listed.json()["servers"] for remote in server["server"]["remotes"]] == [
        ready.url
    ]


ANONYMOUS: dict[str, tuple[str, str, int, Any]] = {
    "healthz": ("GET", "/healthz", 200, {"status": "ok"}),
    "readyz": ("GET", "/readyz", 503, {"ready": False}),
    "metadata": ("GET", "/.well-known/oauth-protected-resource", 200, None),
    "metadata of /mcp": ("GET", "/.well-known/oauth-protected-resource/mcp", 200, None),
    "metadata of a passthrough path": ("GET", f"/.well-known/oauth-protected-resource/{DOWN}/mcp", 200, None),
    "openapi": ("GET", "/v0.1/openapi.json", 200, openapi_document()),
    "registry list": ("GET", "/v0.1/servers", 401, None),
    "registry entry": ("GET", f"/v0.1/servers/io.github.mcp-aggregator/{UPSTREAM}/versions/latest", 401, None),
    "registry unknown path": ("GET", "/v0.1/nothing", 404, {"error": "Not found"}),
    "metrics": ("GET", "/metrics", 401, None),
    "mcp": ("POST", "/mcp", 401, None),
    "mcp stream": ("GET", "/mcp", 401, None),
    "sse": ("GET", "/sse", 401, None),
    "messages": ("POST", "/messages/?session_id=" + "0" * 32, 401, None),
    "validate": ("POST", "/auth/validate", 401, None),
    "unknown path": ("GET", "/admin", 404, None),
}
CHALLENGE_BODY = {"error": "invalid_request", "error_description": "A bearer token is required."}
METADATA_KEYS = {"resource", "authorization_servers", "bearer_methods_supported", "resource_name"}


@pytest.mark.parametrize("name", list(ANONYMOUS))
async def test_an_anonymous_caller_learns_only_what_is_documented(degraded: LiveGateway, name: str) -> None:
    method, path, status, expected = ANONYMOUS[name]
    async with httpx2.AsyncClient(base_url=degraded.base, trust_env=False) as http:
        response = await http.request(method, path, headers={"x-mcp-server": UPSTREAM})
    assert response.status_code == status
    for secret in (UPSTREAM, DOWN, str(degraded.directory), "ConnectError", "Traceback"):
        assert secret not in response.text or name == "metadata of a passthrough path", secret
    if expected is not None:
        assert response.json() == expected
    elif status == 401:
        assert response.json() == CHALLENGE_BODY
    elif name.startswith("metadata"):
        assert set(response.json()) == METADATA_KEYS
        assert response.json()["resource"].startswith(degraded.base)


REJECTED: dict[str, tuple[str, str, dict[str, str], bytes, str]] = {
    "batch over the limit": (
        "POST",
        "/mcp",
        {"content-type": "application/json"},
        b"[" + b",".join([b'{"jsonrpc":"2.0","method":"notifications/x"}'] * 40) + b"]",
        "request.refused",
    ),
    "batch the protocol does not allow": (
        "POST",
        "/mcp",
        {"content-type": "application/json"},
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]',
        "http.refused",
    ),
    "too deep": ("POST", "/mcp", {"content-type": "application/json"}, b"[" * 100, "request.refused"),
    "bad token": ("POST", "/mcp", {"authorization": "Bearer x.y.z"}, b"{}", "auth.rejected"),
    "denied passthrough": (
        "POST",
        "/auth/validate",
        {"x-mcp-server": "nowhere", "authorization": f"Bearer {token_for('stranger')}"},
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}',
        "passthrough.denied",
    ),
    "metrics without permission": ("GET", "/metrics", {}, b"", "http.refused"),
}


@pytest.mark.parametrize("name", list(REJECTED))
async def test_a_rejected_request_is_one_structured_line(ready: LiveGateway, name: str) -> None:
    method, path, headers, body, event = REJECTED[name]
    mark = ready.log.mark()
    caller = {"accept": "application/json, text/event-stream", **authorization("user"), **headers}
    async with httpx2.AsyncClient(base_url=ready.base, trust_env=False, headers=caller) as http:
        response = await http.request(method, path, content=body)
    assert 400 <= response.status_code < 500
    refusals = [r for r in ready.log.records[mark:] if r.name.startswith("aggregator") and r.levelno >= logging.WARNING]
    assert [r.msg for r in refusals] == [event]
    assert not [r for r in ready.log.records[mark:] if r.exc_info]
    line = KeyValueFormatter().format(refusals[0])
    assert "\n" not in line
    assert f" {event} " in line and ("reason=" in line or "status=" in line)
