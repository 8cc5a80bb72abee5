"""What the session tests share: a load balancer in the client, and 2025-11-25 requests made by hand.

`Router` is an httpx2 transport that sends each request to the replica it is pointed at (as nginx
would after a replica goes), and notes what it sent where. The raw helpers speak the wire protocol
without a client session, so a test chooses every header (another principal's token, a session
id after its replica died) and sees the HTTP status the gateway answers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aggregator.cluster.adoption import SessionSharing
from tests.harness import LiveGateway, token_for

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"
SESSION_HEADER = "mcp-session-id"


@dataclass(frozen=True, slots=True)
class Sent:
    """One request the router forwarded: to which replica, in which session, which JSON-RPC method (or HTTP verb)."""

    replica: str
    session: str | None
    method: str


@dataclass
class Router(httpx2.AsyncBaseTransport):
    """The test's load balancer: every request goes to `target` (an address `host:port`), whatever its URL says."""

    target: str
    sent: list[Sent] = field(default_factory=list)
    _inner: httpx2.AsyncHTTPTransport = field(default_factory=lambda: httpx2.AsyncHTTPTransport(trust_env=False))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        host, port = self.target.rsplit(":", 1)
        request.url = request.url.copy_with(host=host, port=int(port))
        method = request.method
        if method == "POST":
            try:
                method = str(json.loads(await request.aread()).get("method", "response"))
            except (ValueError, AttributeError):
                method = "batch"
        self.sent.append(Sent(self.target, request.headers.get(SESSION_HEADER), method))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def on(self, replica: LiveGateway) -> list[Sent]:
        return [sent for sent in self.sent if sent.replica == replica.address]


@asynccontextmanager
async def routed_client(router: Router, sub: str, groups: tuple[str, ...], **options: Any) -> AsyncIterator[Client]:
    """A 2025-11-25 SDK client as `sub`, whose requests go wherever `router` points."""
    headers = {"Authorization": f"Bearer {token_for(sub, groups=groups)}"}
    async with (
        httpx2.AsyncClient(transport=router, headers=headers, trust_env=False) as http,
        Client(streamable_http_client(f"http://{router.target}/mcp", http_client=http), mode="legacy", **options) as c,
    ):
        yield c


def sharing_of(live: LiveGateway) -> SessionSharing:
    """The replica's session sharing (on its /mcp route): which sessions it adopted, and their connections."""
    assert live.app is not None
    route = next(route for route in getattr(live.app, "routes", ()) if getattr(route, "path", None) == "/mcp")
    sharing = getattr(route.app, "sharing", None)
    assert isinstance(sharing, SessionSharing), "the gateway shares no sessions (no cluster.redis_url?)"
    return sharing


def headers(token: str, session_id: str | None = None, version: str = LEGACY) -> dict[str, str]:
    found = {"authorization": f"Bearer {token}", "accept": ACCEPT, "content-type": "application/json"}
    if session_id is not None:
        found[SESSION_HEADER] = session_id
        found["mcp-protocol-version"] = version
    return found


def answer(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC message of a JSON or SSE answer (the last one carrying an id)."""
    if response.headers.get("content-type", "").startswith("application/json"):
        message: dict[str, Any] = response.json()
        return message
    messages = [
        json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()
    ]
    return next(message for message in reversed(messages) if "id" in message)


async def initialize(http: httpx2.AsyncClient, url: str, token: str, name: str = "raw-client") -> str:
    """Open a 2025-11-25 session at `url` by hand (initialize, then initialized); its id."""
    params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": name, "version": "1.0"}}
    opened = await http.post(
        url, headers=headers(token), json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
    )
    assert opened.status_code == 200, opened.text
    session_id = opened.headers[SESSION_HEADER]
    done = await http.post(
        url, headers=headers(token, session_id), json={"jsonrpc": "2.0", "method": "notifications/initialized"}
    )
    assert done.status_code == 202, done.text
    return session_id


async def call_echo(
    http: httpx2.AsyncClient, url: str, token: str, session_id: str | None, text: str, request_id: int = 1
) -> httpx2.Response:
    """One `echo__echo` call: in session `session_id`, or (None) as a 2026-07-28 request."""
    params: dict[str, Any] = {"name": "echo__echo", "arguments": {"text": text}}
    sent = headers(token, session_id)
    if session_id is None:
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        sent |= {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "echo__echo"}
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    return await http.post(url, headers=sent, json=body)


def echoed(response: httpx2.Response) -> str:
    """The text an echo call answered (fails on an HTTP or JSON-RPC error)."""
    assert response.status_code == 200, (response.status_code, response.text)
    message = answer(response)
    assert "result" in message, message
    return "".join(block["text"] for block in message["result"]["content"] if block.get("type") == "text")
