"""Resumable SSE streams for 2025-11-25 sessions: a bounded event store, one buffer per session.

The SDK's streamable-HTTP transport numbers every SSE event it sends through an `EventStore`, opens
each stream with a priming event (an id, empty data, `retry`), and answers a GET carrying
`Last-Event-ID` with what the store replays. The SDK shares one store among all sessions and tells
it nothing about the session, so `SessionEventStore.scoped` wraps the SDK's ASGI app and puts the
calling session's buffer in a context variable: requests of a session see its buffer, and the
session's own task (started by its opening request) inherits it.

Bounds: each session keeps at most `max_events` events and `max_bytes` of JSON (the oldest go
first), and all sessions together at most `total_bytes` (a session that would pass it gives up its
own oldest events, down to none: past that budget streams stay numbered but stop being
replayable, memory does not grow). A buffer is dropped when its session is deleted, or found ended
(idle expiry, crash) when another session opens or the ended one is asked for.

Security: an event id is a random token that names nothing, and it is looked up only in the
caller's own session's buffer (the SDK binds a session to the credential that opened it), so
another session's id replays nothing.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass, field

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import JSONRPCMessage
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator.sdk import legacy_session

RETRY_MILLISECONDS = 2000
"""The reconnection delay the priming event suggests (well below any session idle timeout)."""
MAX_EVENTS = 256
"""Events kept per session: enough for a long call's progress and its result."""
MAX_BYTES = 256 << 10
"""Bytes of event JSON kept per session."""
TOTAL_BYTES = 64 << 20
"""Bytes of event JSON kept for all sessions together (sessions are many: `limits.max_sessions`)."""

_SESSION_HEADER = b"mcp-session-id"


@dataclass(frozen=True)
class _Event:
    stream: StreamId
    message: JSONRPCMessage | None
    """None for a priming event (nothing to replay)."""
    size: int


@dataclass
class Budget:
    """Bytes of event JSON that all sessions' buffers may hold together."""

    limit: int = TOTAL_BYTES
    used: int = 0


@dataclass
class SessionEvents:
    """One session's recent events, oldest first, by their (random) ids."""

    max_events: int
    max_bytes: int
    budget: Budget = field(default_factory=Budget)
    events: OrderedDict[EventId, _Event] = field(default_factory=OrderedDict)
    size: int = 0

    def add(self, stream: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = secrets.token_urlsafe(16)
        size = 0 if message is None else len(message.model_dump_json(by_alias=True, exclude_unset=True))
        self.events[event_id] = _Event(stream, message, size)
        self.size += size
        self.budget.used += size
        while self.events and (
            len(self.events) > self.max_events or self.size > self.max_bytes or self.budget.used > self.budget.limit
        ):
            _, dropped = self.events.popitem(last=False)
            self.size -= dropped.size
            self.budget.used -= dropped.size
        return event_id

    def clear(self) -> None:
        """Forget every event (the session ended), returning their bytes to the budget."""
        self.budget.used -= self.size
        self.events.clear()
        self.size = 0

    def after(self, event_id: EventId) -> tuple[StreamId, list[EventMessage]] | None:
        """The stream `event_id` belongs to and its later events, or None if this session has no such id."""
        event = self.events.get(event_id)
        if event is None:
            return None
        later: list[EventMessage] = []
        seen = False
        for key, candidate in self.events.items():
            if seen and candidate.stream == event.stream and candidate.message is not None:
                later.append(EventMessage(candidate.message, key))
            seen = seen or key == event_id
        return event.stream, later


_current: ContextVar[SessionEvents | None] = ContextVar("mcp_aggregator_session_events", default=None)


class SessionEventStore(EventStore):
    """The SDK's `EventStore`, keeping each session's events apart (see the module docstring)."""

    def __init__(
        self, *, max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES, total_bytes: int = TOTAL_BYTES
    ) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.budget = Budget(total_bytes)
        self._sessions: dict[str, SessionEvents] = {}

    def __len__(self) -> int:
        """Sessions holding a buffer."""
        return len(self._sessions)

    def buffer(self, session_id: str) -> SessionEvents | None:
        return self._sessions.get(session_id)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        events = _current.get()
        if events is None:  # not reached through `scoped`: numbered, never replayable
            return secrets.token_urlsafe(16)
        return events.add(stream_id, message)

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        events = _current.get()
        found = events.after(last_event_id) if events is not None else None
        if found is None:
            return None
        stream, later = found
        for event in later:
            await send_callback(event)
        return stream

    def scoped(self, app: ASGIApp, manager: StreamableHTTPSessionManager) -> ASGIApp:
        """`app` (the SDK's streamable-HTTP app over `manager`) with each request bound to its session's buffer."""
        return _Scoped(self, app, manager)

    def opened(self, session_id: str, events: SessionEvents, manager: StreamableHTTPSessionManager) -> None:
        """Keep `events` as the buffer of the new session `session_id`; drop those of sessions that ended
        without a DELETE (idle expiry, crash)."""
        for ended in [s for s in self._sessions if legacy_session(manager, s) is None]:
            self.drop(ended)
        self._sessions[session_id] = events

    def drop(self, session_id: str) -> None:
        if (events := self._sessions.pop(session_id, None)) is not None:
            events.clear()


class _Scoped:
    """The ASGI app `SessionEventStore.scoped` returns (an object, not a function: Starlette's `Route`
    hands a function a `Request`, an object the raw ASGI call)."""

    def __init__(self, store: SessionEventStore, app: ASGIApp, manager: StreamableHTTPSessionManager) -> None:
        self._store, self._app, self._manager = store, app, manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        session_id = _header(scope["headers"], _SESSION_HEADER)
        if session_id is not None:
            token = _current.set(self._store.buffer(session_id))
            try:
                await self._app(scope, receive, send)
            finally:
                _current.reset(token)
                if scope["method"] == "DELETE" or legacy_session(self._manager, session_id) is None:
                    self._store.drop(session_id)
            return
        events = SessionEvents(self._store.max_events, self._store.max_bytes, self._store.budget)

        async def register(message: Message) -> None:
            opening = message["type"] == "http.response.start" and message["status"] < 400
            if opening and (opened := _header(message.get("headers", []), _SESSION_HEADER)) is not None:
                self._store.opened(opened, events, self._manager)
            await send(message)

        token = _current.set(events)
        try:
            await self._app(scope, receive, register)
        finally:
            _current.reset(token)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in headers if key.lower() == name), None)
