"""Where the console's gateway is, and how a session to it is opened.

The management tools are served on the gateway's `/mcp/admin` endpoint (`/mcp` offers agents the
upstream tools and the finder only): `admin_url` finds it from whatever address the operator gives
(the origin, the `/mcp` URL, or the admin URL itself). A `Target` opens an MCP `Client` session: `HttpTarget` over
streamable HTTP with the operator's bearer token; tests may open one to an in-process server.

The MCP SDK turns an HTTP 401 into a bare "Server returned an error response", so `HttpTarget`
watches the responses itself: when the gateway refused the token, the session's failure becomes
`TokenRejected` with the gateway's reason (its `WWW-Authenticate` `error_description`, else the
body's), which the console can say in one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.session import MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client

from tui.errors import TokenRejected

ADMIN_PATH = "/mcp/admin"
"""The path of the gateway's MCP endpoint that serves the management tools."""
AGENT_ENDPOINT = "/mcp"
"""The agents' endpoint: given as the address (also behind a proxy's prefix), its `/admin` is the console's."""
CLIENT_NAME = "mcp-aggregator-tui"
"""The console's `clientInfo` name: the audit log records it as `client`, and `recent_activity`
leaves these calls out of its statistics (`aggregator.tools.activity.CONSOLE_CLIENT`)."""
CLIENT_INFO = types.Implementation(name=CLIENT_NAME, version="0.2.0")
REQUEST_TIMEOUT = 30.0
DESCRIPTION = re.compile(r'error_description="((?:[^"\\]|\\.)*)"')

Notified = MessageHandlerFnT
"""Receives what the gateway sends unasked (2025-11-25 notifications: resource updated, list changed)."""


def admin_url(url: str) -> str:
    """The management endpoint of the gateway at `url`: given its origin or its `/mcp` URL (under any
    proxy prefix), the `/mcp/admin` beside it; an admin URL, or any other path, is kept as given."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path == "":
        path = ADMIN_PATH
    elif path.endswith(AGENT_ENDPOINT):
        path += ADMIN_PATH.removeprefix(AGENT_ENDPOINT)
    else:
        return url
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class Target(Protocol):
    """Where the gateway is, and how to open an MCP session to it."""

    @property
    def label(self) -> str: ...

    def open(self, notified: Notified | None = None) -> AbstractAsyncContextManager[Client]: ...


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """The gateway's admin endpoint over streamable HTTP, called with the operator's bearer token (if any)."""

    url: str
    token: str | None = None
    mode: Literal["auto", "legacy"] = "auto"
    """`auto` speaks 2026-07-28 where the gateway does; `legacy` the 2025-11-25 handshake."""

    @property
    def label(self) -> str:
        return self.url

    @asynccontextmanager
    async def open(self, notified: Notified | None = None) -> AsyncIterator[Client]:
        refusals: list[str] = []
        refused = anyio.CancelScope()  # a refused token ends the session, whatever the caller was doing

        async def watch(response: httpx2.Response) -> None:
            if response.status_code in (401, 403):
                await response.aread()
                refusals.append(rejection_reason(response))
                refused.cancel()

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = httpx2.Timeout(REQUEST_TIMEOUT, connect=5.0)
        try:
            async with (
                httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks={"response": [watch]}) as http,
                # No response cache: the console polls to see changes, a cached list would hide them.
                Client(
                    streamable_http_client(self.url, http_client=http),
                    mode=self.mode,
                    cache=None,
                    client_info=CLIENT_INFO,
                    message_handler=notified,
                ) as client,
            ):
                with refused:
                    yield client
        except Exception as error:  # whatever the SDK made of it, a refused token is the reason
            if refusals:
                raise TokenRejected(refusals[-1], token_given=self.token is not None) from error
            raise
        if refusals:
            raise TokenRejected(refusals[-1], token_given=self.token is not None)


def rejection_reason(response: httpx2.Response) -> str:
    """Why the gateway refused the token: its `WWW-Authenticate` description, else the body's, else the status."""
    if match := DESCRIPTION.search(response.headers.get("www-authenticate", "")):
        return match.group(1).replace('\\"', '"')
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error_description", "detail", "message", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return f"HTTP {response.status_code}"
