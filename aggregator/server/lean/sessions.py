"""The 2025-11-25 sessions the lean path may serve: those the SDK path has seen at least once.

A session's state (negotiated version, declared capabilities, log level, the notifier's watch)
lives on the SDK's `Connection`, which the SDK hands only to handlers. `LegacyConnections` is a
server middleware that notes each session's connection as its requests pass (`initialize` is the
first); until it has, the lean path sends the session's requests the SDK way.
"""

from __future__ import annotations

import weakref
from typing import Any

from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from aggregator.sdk import connection_of


class LegacyConnections:
    """Session id -> the SDK's `Connection` for that session (weakly held: a closed session goes away)."""

    def __init__(self) -> None:
        self._by_session: weakref.WeakValueDictionary[str, Connection] = weakref.WeakValueDictionary()

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """The server middleware: remember the connection of the session this request belongs to."""
        connection = connection_of(ctx.session)
        if connection.session_id is not None and connection.session_id not in self._by_session:
            self._by_session[connection.session_id] = connection
        return await call_next(ctx)

    def get(self, session_id: str) -> Connection | None:
        """The connection of session `session_id`, once the SDK path has served one of its requests."""
        return self._by_session.get(session_id)
