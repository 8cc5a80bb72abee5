"""Class 6: a token minted with generate_token never outlives, outranks or outlasts the token it came from.

Through a real secured gateway in front of the weather demo server, in both eras: the child's
`exp` is clipped to its parent's (and the result says so); the child carries the chain
(`parent_jti`); revoking any ancestor (the way `mcp-aggregator token revoke` does, from outside
the running gateway) refuses every descendant at once, on `/mcp` and on `/auth/validate`; the
depth of the chain is bounded by `auth.max_delegation_depth`; a chain that was tampered with is
refused; an OIDC parent without a `jti` is chained by a digest of the token.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from mcp import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aggregator.config.settings import AuthSettings, OidcIssuerSettings
from aggregator.policy.revocation import RevocationList
from aggregator.policy.vending import mint_token, token_id_of
from tests.harness import (
    ADMIN,
    AUTH,
    ERAS,
    SECRET,
    Era,
    LiveGateway,
    serve_asgi,
    serve_gateway,
    serve_upstream,
    token_for,
)
from tests.policy.oidc import public_jwk, rsa_jwk

pytestmark = pytest.mark.anyio

SCOPES = """
group_mappings:
  users: [weather-all, minting]
weather-all:
- server: weather
  methods: [tools/list, tools/call]
  tools: ["*"]
minting:
- server: mcpgw
  methods: [tools/list, tools/call]
  tools: [generate_token]
"""
CHILD_SCOPES = ["minting", "weather-all"]
WEATHER_TOOLS = {"weather__get_forecast", "weather__get_current_conditions", "weather__list_weather_alerts"}
STANDARD_CLAIMS = {"iss", "aud", "sub", "scope", "exp", "iat", "jti", "token_use", "client_id"}
OIDC_ISSUER = "https://idp.example.test"
OIDC_AUDIENCE = "urn:mcp-aggregator:chain-tests"


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


@pytest.fixture(scope="module")
async def weather() -> AsyncIterator[str]:
    async with serve_upstream("weather") as url:
        yield url


def chain_gateway(
    directory: Path, weather: str, depth: int = 1, auth: AuthSettings = AUTH
) -> AbstractAsyncContextManager[LiveGateway]:
    settings = auth.model_copy(update={"max_delegation_depth": depth})
    servers = {"weather": {"transport": "streamable-http", "url": weather}}
    return serve_gateway(directory, servers=servers, scopes=SCOPES, auth=settings, rate_limit_per_second=0)


async def mint(live: LiveGateway, parent: str, era: Era, ttl: int = 600, scopes: list[str] = CHILD_SCOPES) -> Any:
    """generate_token called with `parent` as the bearer: its structured result."""
    async with live.client(token=parent, era=era, path=ADMIN) as client:
        return (await client.call_tool("generate_token", {"scopes": scopes, "ttl_seconds": ttl})).structured_content


async def refusal(live: LiveGateway, token: str) -> tuple[str | None, str | None]:
    """Why `/mcp` and `/auth/validate` refuse `token` (None where they accept it)."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    passthrough = {"X-Mcp-Server": "weather", "X-Original-Method": "POST", "X-Original-URI": "/weather/mcp"}
    answers: list[str | None] = []
    async with live.http(token) as http:
        for path, body, headers in (
            ("/mcp", initialize, {"Accept": "application/json, text/event-stream"}),
            ("/auth/validate", listing, passthrough),
        ):
            response = await http.post(path, json=body, headers=headers)
            if response.status_code == 401:
                answers.append(response.json()["error_description"])
            else:
                assert response.status_code == 200, (path, response.status_code, response.text)
                answers.append(None)
    return answers[0], answers[1]


async def works(live: LiveGateway, token: str, era: Era) -> bool:
    async with live.client(token=token, era=era) as client:
        return {tool.name for tool in (await client.list_tools()).tools} >= WEATHER_TOOLS


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    ("parent_ttl", "requested", "clipped"),
    [(120, 3600, True), (120, 121, True), (60, 86400, True), (600, 60, False), (3600, 30, False)],
)
async def test_a_child_never_outlives_its_parent(
    tmp_path: Path, weather: str, era: Era, parent_ttl: int, requested: int, clipped: bool
) -> None:
    parent = token_for("alice", groups=["users"], ttl=parent_ttl)
    async with chain_gateway(tmp_path, weather) as live:
        minted = await mint(live, parent, era, ttl=requested)
        child = minted["access_token"]
        assert await works(live, child, era)
        assert await refusal(live, child) == (None, None)
    claims, parent_claims = claims_of(child), claims_of(parent)
    assert claims["exp"] <= parent_claims["exp"]
    assert minted["clipped"] is clipped and minted["expires_at"] == claims["exp"]
    assert minted["expires_in"] == claims["exp"] - claims["iat"] <= requested
    if clipped:
        assert claims["exp"] == parent_claims["exp"]
        assert "never outlives the token it was minted with" in minted["note"]
    else:
        assert "note" not in minted and minted["expires_in"] == requested
    assert set(claims) >= STANDARD_CLAIMS
    assert claims["sub"] == "alice" and claims["client_id"] == "alice" and claims["token_use"] == "access"
    assert claims["parent_jti"] == minted["parent_jti"] == [parent_claims["jti"]]
    assert "groups" not in claims and claims["scope"] == " ".join(CHILD_SCOPES)


@dataclass(frozen=True)
class Chain:
    """root -> child -> grandchild, minted through the gateway (depth limit 2)."""

    root: str
    child: str
    grandchild: str

    def token(self, name: str) -> str:
        token: str = getattr(self, name)
        return token


ORDER = ("root", "child", "grandchild")


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("revoked", ORDER)
async def test_revoking_an_ancestor_refuses_every_descendant_at_once(
    tmp_path: Path, weather: str, era: Era, revoked: str
) -> None:
    async with chain_gateway(tmp_path, weather, depth=2) as live:
        root = token_for("alice", groups=["users"], ttl=600)
        child = (await mint(live, root, era))["access_token"]
        grandchild = (await mint(live, child, era))["access_token"]
        chain = Chain(root, child, grandchild)
        assert claims_of(grandchild)["parent_jti"] == [claims_of(root)["jti"], claims_of(child)["jti"]]
        for name in ORDER:
            assert await works(live, chain.token(name), era), name
        revoked_jti = claims_of(chain.token(revoked))["jti"]
        # what `mcp-aggregator token revoke` does: another writer of the running gateway's list
        RevocationList(live.directory / "data" / "revoked.json").revoke(revoked_jti)
        for position, name in enumerate(ORDER):
            token = chain.token(name)
            jti = claims_of(token)["jti"]
            if position < ORDER.index(revoked):
                assert await refusal(live, token) == (None, None), name
                assert await works(live, token, era), name
                continue
            reason = (
                f"token {jti} has been revoked"
                if token == chain.token(revoked)
                else f"token {jti} was minted from token {revoked_jti}, which has been revoked"
            )
            assert await refusal(live, token) == (reason, reason), name


def depth_refusal(depth: int) -> str:
    if depth == 0:
        return "Minting tokens is turned off on this gateway (auth.max_delegation_depth is 0)."
    steps = f"{depth} step{'s' * (depth != 1)}"
    return (
        f"Your token was itself minted by generate_token ({steps} from its root), "
        f"and auth.max_delegation_depth is {depth}: it may not mint another token."
    )


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("depth", [0, 1, 2, 3])
async def test_minting_stops_at_the_depth_limit(tmp_path: Path, weather: str, era: Era, depth: int) -> None:
    async with chain_gateway(tmp_path, weather, depth=depth) as live:
        token = token_for("alice", groups=["users"], ttl=600)
        for _ in range(depth):
            token = (await mint(live, token, era))["access_token"]
            assert await works(live, token, era)
        assert len(claims_of(token).get("parent_jti", [])) == depth
        async with live.client(token=token, era=era, path=ADMIN) as client:
            with pytest.raises(MCPError) as refused:
                await client.call_tool("generate_token", {"scopes": [], "ttl_seconds": 60})
        assert refused.value.message == depth_refusal(depth)


def _with_payload(token: str, payload: dict[str, Any]) -> str:
    """`token` with other claims but its original signature (what a forger without the key can do)."""
    header, _, signature = token.split(".")
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


def _resign(token: str, change: dict[str, Any]) -> str:
    return _with_payload(token, {**claims_of(token), **change})


def _drop_claim(token: str, claim: str) -> str:
    return _with_payload(token, {name: value for name, value in claims_of(token).items() if name != claim})


def _with_key(claims: dict[str, Any], secret: str, kid: str = "tests", algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm, headers={"kid": kid})


INVALID = "token signature is invalid"
AUTH_SECRET = SECRET
TAMPERINGS: dict[str, tuple[Any, str]] = {
    "chain dropped": (lambda child, root: _drop_claim(child, "parent_jti"), INVALID),
    "chain emptied": (lambda child, root: _resign(child, {"parent_jti": []}), INVALID),
    "ancestor swapped": (lambda child, root: _resign(child, {"parent_jti": ["0" * 32]}), INVALID),
    "exp extended": (lambda child, root: _resign(child, {"exp": claims_of(child)["exp"] + 86400}), INVALID),
    "scope widened": (lambda child, root: _resign(child, {"scope": "weather-all minting admin"}), INVALID),
    "re-signed with another secret": (
        lambda child, root: _with_key({**claims_of(child), "parent_jti": []}, "x" * 40),
        INVALID,
    ),
    "unsigned": (
        lambda child, root: jwt.encode({**claims_of(child), "parent_jti": []}, "", algorithm="none"),
        "unsigned tokens (alg none) are not accepted",
    ),
    "signed, but deeper than the limit": (
        lambda child, root: mint_token(AUTH, "alice", CHILD_SCOPES, 600, ancestors=["a" * 32, "b" * 32])[0],
        "token was minted 2 generate_token steps from its root; at most 1 are accepted (auth.max_delegation_depth)",
    ),
    "signed, chain not a list": (
        lambda child, root: _with_key({**claims_of(child), "parent_jti": claims_of(root)["jti"]}, AUTH_SECRET),
        "token has a malformed parent_jti claim",
    ),
    "signed, chain of numbers": (
        lambda child, root: _with_key({**claims_of(child), "parent_jti": [7]}, AUTH_SECRET),
        "token has a malformed parent_jti claim",
    ),
    "signed, empty ancestor id": (
        lambda child, root: _with_key({**claims_of(child), "parent_jti": [""]}, AUTH_SECRET),
        "token has a malformed parent_jti claim",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERINGS))
async def test_a_tampered_chain_is_refused(tmp_path: Path, weather: str, case: str) -> None:
    tamper, reason = TAMPERINGS[case]
    root = token_for("alice", groups=["users"], ttl=600)
    async with chain_gateway(tmp_path, weather) as live:
        child = (await mint(live, root, "legacy"))["access_token"]
        forged = tamper(child, root)
        assert await refusal(live, forged) == (reason, reason)
        assert await refusal(live, child) == (None, None)  # the genuine one still works


@dataclass(frozen=True)
class Issuer:
    url: str
    key: dict[str, Any]

    def token(self, ttl: int, **extra: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": OIDC_ISSUER, "aud": OIDC_AUDIENCE, "sub": "olivia", "groups": ["users"]}
        claims |= {"iat": now, "exp": now + ttl, **extra}
        return jwt.encode(claims, jwt.PyJWK(self.key).key, algorithm="RS256", headers={"kid": self.key["kid"]})


@asynccontextmanager
async def oidc_issuer() -> AsyncIterator[Issuer]:
    """A minimal OIDC issuer: its JWKS on loopback; tokens signed with its RSA key."""
    key = rsa_jwk("idp-1")

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [public_jwk(key)]})

    async with serve_asgi(Starlette(routes=[Route("/jwks", jwks)]), path="/jwks") as url:
        yield Issuer(url, key)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("with_jti", [False, True])
async def test_an_oidc_parent_is_chained_by_its_jti_or_a_digest(
    tmp_path: Path, weather: str, era: Era, with_jti: bool
) -> None:
    async with oidc_issuer() as issuer:
        oidc = OidcIssuerSettings(issuer=OIDC_ISSUER, audiences=(OIDC_AUDIENCE,), jwks_uri=issuer.url)
        auth = AUTH.model_copy(update={"oidc_issuers": (oidc,)})
        parent = issuer.token(120, **({"jti": "idp-token-42"} if with_jti else {}))
        parent_id = "idp-token-42" if with_jti else token_id_of(parent, None)
        async with chain_gateway(tmp_path, weather, auth=auth) as live:
            minted = await mint(live, parent, era, ttl=3600)
            child = minted["access_token"]
            assert minted["parent_jti"] == claims_of(child)["parent_jti"] == [parent_id]
            assert minted["clipped"] and claims_of(child)["exp"] == claims_of(parent)["exp"]
            assert await works(live, child, era)
            RevocationList(live.directory / "data" / "revoked.json").revoke(parent_id)
            child_reason = f"token {claims_of(child)['jti']} was minted from token {parent_id}, which has been revoked"
            assert await refusal(live, child) == (child_reason, child_reason)
            parent_reason = f"token {parent_id} has been revoked"
            assert await refusal(live, parent) == (parent_reason, parent_reason)
    if not with_jti:
        assert parent_id.startswith("sha256:") and parent_id == token_id_of(parent, "")
