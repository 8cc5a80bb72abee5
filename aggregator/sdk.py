"""The one adapter over the mcp SDK's internals.

Everything else in the gateway uses the SDK's public API. Each function here names the private
attribute or behaviour it relies on and the public API that is missing; when the SDK grows that
API, the change is made here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from mcp.client._input_required import run_input_required_driver as _run_input_required_driver
from mcp.client._transport import TransportStreams as _TransportStreams
from mcp.client.session import ClientSession
from mcp.server.connection import Connection
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

TransportStreams = _TransportStreams
"""The (read, write) stream pair a client transport yields. Missing: a public alias (`mcp.client._transport`)."""

run_input_required_driver = _run_input_required_driver
"""Drives an upstream's 2026-07-28 `input_required` rounds for a caller that speaks 2025-11-25.
Missing: the driver `Client.call_tool` uses is not exported (`mcp.client._input_required`)."""

Stamp = Callable[[dict[str, Any], Any], None]


def connection_of(session: Any) -> Connection:
    """The `Connection` behind a server-side session: per-connection state and a stable identity.

    Missing: `ServerSession` exposes no accessor for its connection (`session._connection`).
    """
    connection: Connection = session._connection
    return connection


def wrap_request_stamp(session: ClientSession, wrap: Callable[[Stamp], Stamp]) -> None:
    """Replace the stamp a client session puts on every outgoing request's `_meta` by `wrap(stamp)`.

    Missing: a per-request hook for `_meta` on outgoing requests (`ClientSession._stamp`); the
    gateway needs it to send each caller's own client capabilities upstream.
    """
    session._stamp = wrap(session._stamp)  # type: ignore[attr-defined]


BrokenStream = Literal["too-large", "invalid", "ended"]
"""Why one response stream broke: over the byte limit, not valid SSE/JSON-RPC, or ended before the answer."""


def broken_response_stream(error: MCPError) -> BrokenStream | None:
    """If `error` says one streamable-HTTP response stream broke (not the whole session), why.

    Missing: a typed error; the SDK reports it only as `CONNECTION_CLOSED` whose message starts
    with "SSE stream" and says the rest in words.
    """
    if error.code != CONNECTION_CLOSED or not error.message.startswith("SSE stream"):
        return None
    if "byte limit" in error.message:
        return "too-large"
    if error.message.startswith("SSE stream failed"):
        return "invalid"
    return "ended"
