"""`mcp-aggregator login`: a user signs in (OAuth 2.1 authorization code + PKCE) and the tokens are kept.

    login()      OIDC discovery -> PKCE (S256) + state -> loopback redirect listener on 127.0.0.1
                 -> the browser signs in -> code + state (+ RFC 9207 `iss`) checked -> token request
    refresh()    the refresh-token grant, against the endpoint and client stored with the tokens
    get_token()  the stored access token, refreshed first when it has (nearly) expired

Tokens live in one JSON file (mode 0600, in a folder of mode 0700, replaced atomically) and are
never printed or logged; a file others can read is refused. Every failure is a `LoginError` whose
message says what to do, without a secret in it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
import sys
import tempfile
import time
import webbrowser
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx2
import jwt

from aggregator.cli.loopback import LoopbackRedirect
from aggregator.config.settings import LoginSettings
from aggregator.errors import LoginError

REQUEST_TIMEOUT = 15.0
EXPIRY_LEEWAY = 60.0  # refresh this many seconds before the access token expires


@dataclass(frozen=True)
class Endpoints:
    """What OIDC discovery says about an authorization server."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str


@dataclass(frozen=True)
class StoredTokens:
    """The token file's content: the tokens, and what is needed to refresh them without flags."""

    issuer: str
    client_id: str
    token_endpoint: str
    access_token: str
    refresh_token: str | None
    expires_at: float | None
    scope: str = ""
    resource: str | None = None

    def expired(self, leeway: float = EXPIRY_LEEWAY) -> bool:
        return self.expires_at is not None and self.expires_at - leeway <= time.time()

    @property
    def subject(self) -> str | None:
        """The access token's `sub`, read without verification: only for telling the user who they are."""
        try:
            claims = jwt.decode(self.access_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        return str(claims["sub"]) if claims.get("sub") else None


@dataclass(frozen=True)
class Pkce:
    """A PKCE pair (RFC 7636): the verifier stays here, the S256 challenge goes to the browser."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


async def discover(http: httpx2.AsyncClient, issuer: str) -> Endpoints:
    """The issuer's endpoints from `<issuer>/.well-known/openid-configuration`."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = await http.get(url)
        metadata = response.json() if response.status_code == 200 else None
    except (httpx2.HTTPError, ValueError) as error:
        raise LoginError(f"OIDC discovery at {url} failed: {type(error).__name__}: {error}") from None
    if not isinstance(metadata, dict):
        raise LoginError(f"OIDC discovery at {url} answered HTTP {response.status_code}, not a JSON document.")
    if metadata.get("issuer") != issuer:
        raise LoginError(f"{url} names issuer {metadata.get('issuer')!r}, not {issuer!r}.")
    methods = metadata.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise LoginError(f"{issuer} does not support PKCE with S256.")
    try:
        return Endpoints(issuer, str(metadata["authorization_endpoint"]), str(metadata["token_endpoint"]))
    except KeyError as missing:
        raise LoginError(f"{url} has no {missing.args[0]}.") from None


async def login(
    settings: LoginSettings, *, show: Callable[[str], None], open_browser: bool = True, http: httpx2.AsyncClient
) -> StoredTokens:
    """Sign the user in through the browser and return (not store) the tokens.

    `show` receives the sign-in URL, always: the browser may not open, or may be on another screen.
    """
    if not settings.issuer or not settings.client_id:
        raise LoginError("Give --issuer and --client-id (or MCP_AGGREGATOR_LOGIN_ISSUER and _CLIENT_ID).")
    endpoints = await discover(http, settings.issuer)
    pkce, state = Pkce.new(), secrets.token_urlsafe(32)
    try:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=settings.redirect_port)
    except OSError as error:
        where = f"127.0.0.1:{settings.redirect_port}"
        raise LoginError(f"Cannot listen on {where} for the redirect: {error.strerror}.") from None
    async with LoopbackRedirect(listener, state=state, issuer=endpoints.issuer).serving() as redirect:
        query = {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": redirect.uri,
            **({"scope": " ".join(settings.scopes)} if settings.scopes else {}),
            "state": state,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
            **({"resource": settings.resource} if settings.resource else {}),
        }
        url = f"{endpoints.authorization_endpoint}?{urlencode(query)}"
        show(f"Open this URL in a browser to sign in:\n  {url}")
        if open_browser:
            await anyio.to_thread.run_sync(webbrowser.open, url)
        code: str | None = None
        with anyio.move_on_after(settings.timeout):
            code = await redirect.code()
    if redirect.failure is not None:
        raise LoginError(redirect.failure)
    if code is None:
        raise LoginError(f"Nobody came back from the browser within {settings.timeout:g} s; run login again.")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect.uri,
        "client_id": settings.client_id,
        "code_verifier": pkce.verifier,
        **({"resource": settings.resource} if settings.resource else {}),
    }
    answer = await _token_request(http, endpoints.token_endpoint, form, "authorization code")
    return _stored(answer, endpoints.issuer, settings.client_id, endpoints.token_endpoint, settings.resource, None)


async def refresh(tokens: StoredTokens, *, http: httpx2.AsyncClient) -> StoredTokens:
    """New tokens from the stored refresh token (kept when the server does not rotate it)."""
    if not tokens.refresh_token:
        raise LoginError("No refresh token is stored; run `mcp-aggregator login` again.")
    form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token, "client_id": tokens.client_id}
    if tokens.resource:
        form["resource"] = tokens.resource
    answer = await _token_request(http, tokens.token_endpoint, form, "refresh token")
    return _stored(answer, tokens.issuer, tokens.client_id, tokens.token_endpoint, tokens.resource, tokens)


async def get_token(token_file: Path, *, leeway: float = EXPIRY_LEEWAY, http: httpx2.AsyncClient | None = None) -> str:
    """The stored access token; refreshed (and stored) first when it expires within `leeway` seconds."""
    tokens = load_tokens(token_file)
    if tokens.expired(leeway):
        async with _client(http) as client:
            tokens = await refresh_stored(token_file, http=client, leeway=leeway)
    return tokens.access_token


async def refresh_stored(token_file: Path, *, http: httpx2.AsyncClient, leeway: float | None = None) -> StoredTokens:
    """Refresh the tokens in `token_file` (only if they expire within `leeway` seconds, when given) and store them.

    Concurrent callers (several agents, one file) refresh once: this runs under a lock and re-reads
    the file, so a rotated refresh token is never spent twice.
    """
    async with _locked(token_file):
        tokens = load_tokens(token_file)
        if leeway is None or tokens.expired(leeway):
            tokens = await refresh(tokens, http=http)
            await anyio.to_thread.run_sync(save_tokens, token_file, tokens)
    return tokens


def save_tokens(path: Path, tokens: StoredTokens) -> None:
    """Write `tokens` to `path` atomically with mode 0600 (its folder 0700 when created here)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
    ) as handle:  # mkstemp creates it 0600
        json.dump(asdict(tokens), handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def load_tokens(path: Path) -> StoredTokens:
    """The tokens stored at `path`; refuses a missing, malformed or group/world-readable file."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LoginError(f"No tokens at {path}; run `mcp-aggregator login` first.") from None
    except OSError as error:
        raise LoginError(f"Cannot read {path}: {error.strerror}.") from None
    if mode & 0o077:
        raise LoginError(f"{path} is readable by other users (mode {mode & 0o777:o}); run chmod 600 {path}.")
    try:
        return StoredTokens(**json.loads(text))
    except (ValueError, TypeError):
        raise LoginError(f"{path} is not a token file written by `mcp-aggregator login`.") from None


def run(settings: LoginSettings, *, refresh_only: bool, open_browser: bool) -> int:
    """The `login` command: sign in (or refresh), store the tokens, say who is signed in; exit status."""

    def show(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    async def main() -> StoredTokens:
        async with _client(None) as http:
            if refresh_only:
                return await refresh_stored(settings.token_file, http=http)
            tokens = await login(settings, show=show, open_browser=open_browser, http=http)
            await anyio.to_thread.run_sync(save_tokens, settings.token_file, tokens)
            return tokens

    try:
        tokens = anyio.run(main)
    except LoginError as error:
        show(f"mcp-aggregator: {error}")
        return 1
    who = f" as {tokens.subject}" if tokens.subject else ""
    lifetime = f"; the access token expires in {tokens.expires_at - time.time():.0f} s" if tokens.expires_at else ""
    action = "Refreshed the tokens" if refresh_only else "Signed in"
    show(f"{action} at {tokens.issuer}{who}; tokens saved to {settings.token_file}{lifetime}.")
    return 0


async def _token_request(http: httpx2.AsyncClient, endpoint: str, form: dict[str, str], grant: str) -> dict[str, Any]:
    try:
        response = await http.post(endpoint, data=form, headers={"Accept": "application/json"})
        body = response.json()
    except (httpx2.HTTPError, ValueError) as error:
        raise LoginError(f"The {grant} request to {endpoint} failed: {type(error).__name__}.") from None
    if response.status_code != 200 or not isinstance(body, dict):
        error_code = body.get("error", "?") if isinstance(body, dict) else "?"
        description = body.get("error_description", "") if isinstance(body, dict) else ""
        again = "; run `mcp-aggregator login` again" if grant == "refresh token" else ""
        refusal = f"HTTP {response.status_code}: {error_code} {description}".strip()
        raise LoginError(f"{endpoint} refused the {grant} ({refusal}){again}.")
    if not isinstance(body.get("access_token"), str) or str(body.get("token_type", "")).lower() != "bearer":
        raise LoginError(f"{endpoint} answered the {grant} without a bearer access token.")
    return body


def _stored(
    answer: dict[str, Any],
    issuer: str,
    client_id: str,
    token_endpoint: str,
    resource: str | None,
    previous: StoredTokens | None,
) -> StoredTokens:
    expires_in = answer.get("expires_in")
    tokens = StoredTokens(
        issuer=issuer,
        client_id=client_id,
        token_endpoint=token_endpoint,
        access_token=answer["access_token"],
        refresh_token=answer.get("refresh_token"),
        expires_at=time.time() + float(expires_in) if isinstance(expires_in, int | float) else None,
        scope=str(answer.get("scope", "")),
        resource=resource,
    )
    if previous is not None and tokens.refresh_token is None:
        tokens = replace(tokens, refresh_token=previous.refresh_token)
    return tokens


@asynccontextmanager
async def _client(http: httpx2.AsyncClient | None) -> AsyncIterator[httpx2.AsyncClient]:
    if http is not None:
        yield http
        return
    async with httpx2.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
        yield client


@asynccontextmanager
async def _locked(token_file: Path) -> AsyncIterator[None]:
    """An exclusive `flock` on `<token file>.lock`, taken in a worker thread so the event loop runs on."""
    if not token_file.parent.is_dir():
        raise LoginError(f"No tokens at {token_file}; run `mcp-aggregator login` first.")
    descriptor = os.open(token_file.with_name(token_file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await anyio.to_thread.run_sync(fcntl.flock, descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
