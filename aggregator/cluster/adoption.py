"""Any replica continues any 2025-11-25 session: records written as sessions change, adopted on demand.

`SessionSharing` has two faces, wired by the HTTP edge:

- a server middleware (`middleware`) that writes a session's record when `initialize` succeeds and
  again when the client changes its log level or its resource subscriptions;
- an ASGI wrapper (`wrap`) around /mcp: a request naming a session id this replica does not hold is
  looked up in Redis, and if the record exists and the request's principal is the one it is bound
  to, the session is opened here under the same id, already initialized with the recorded values,
  before the request goes on (so the client never initializes again). A request of any other
  principal goes on untouched and gets the SDK's 404, the same as for an id nobody knows: the
  answer says nothing about whether the session exists. A DELETE ends the record, and every
  replica's copy; each use pushes the record's expiry back.

A replica that adopts a session subscribes it again, through the server's own `resources/subscribe`
handler (checked, logged and audited as the client's own request), to what its record lists. A copy
another replica has since adopted or changed catches up the same way when the session comes back to
it, for the record's own principal only (`_catch_up`).
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from mcp.server import Server
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext, authorization_context
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import InitializeRequestParams, SubscribeRequestParams
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator.cluster.sessions import SESSION_ID_PATTERN, SessionRecord, SharedSessions, owner_digest
from aggregator.sdk import adopt_legacy_session, connection_of, end_legacy_session, legacy_session

logger = logging.getLogger(__name__)

RECORD_STATE_KEY = "mcp_aggregator.session_record"
"""Where a session's current record is kept in its `Connection.state` (it goes when the session goes)."""
PRUNE_AT = 1024
"""Notes of sessions kept before those of ended sessions are looked for (then again each time they double)."""
_SESSION_ID = re.compile(SESSION_ID_PATTERN)
_SESSION_HEADER = b"mcp-session-id"

Opened = Callable[[str], None]
"""Told each session id adopted here (the event store keeps a buffer for it)."""


class SessionSharing:
    """Shares the 2025-11-25 sessions of `manager` through `shared` (see the module docstring).

    `log_level_key` names the `Connection.state` entry where the gateway keeps a session's log level;
    `ttl` is how long a record outlives the session's last use (the session idle timeout).
    """

    def __init__(
        self,
        shared: SharedSessions,
        manager: StreamableHTTPSessionManager,
        server: Server[Any],
        log_level_key: str,
        ttl: float,
        opened: Opened | None = None,
    ) -> None:
        self._shared = shared
        self._ttl = ttl
        self._manager = manager
        self._server = server
        self._log_level_key = log_level_key
        self._opened = opened
        self._adopting = anyio.Lock()
        self._prune_at = PRUNE_AT
        self.adopted: weakref.WeakValueDictionary[str, Connection] = weakref.WeakValueDictionary()
        """Session id -> the connection of each live session this replica opened from a record."""
        self.copies: weakref.WeakValueDictionary[str, Connection] = weakref.WeakValueDictionary()
        """Session id -> the connection of each live shared session held here (opened here or adopted)."""
        shared.ended = self._ended_elsewhere

    # the server middleware

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Write the session's record when initialize succeeds, and when its log level or subscriptions change."""
        result = await call_next(ctx)
        method = ctx.method
        if method in ("initialize", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"):
            connection = connection_of(ctx.session)
            if connection.session_id is not None:
                record = self._changed(connection, method, ctx.params, result)
                if record is not None:
                    connection.state[RECORD_STATE_KEY] = record
                    self.copies[connection.session_id] = connection
                    await self._shared.save(record, self._ttl)
                    self._prune()
        return result

    def _changed(self, connection: Connection, method: str, params: Any, result: HandlerResult) -> SessionRecord | None:
        assert connection.session_id is not None
        params = dict(params) if isinstance(params, Mapping) else {}
        if method == "initialize":
            return self._initialized(connection.session_id, params, result)
        record = connection.state.get(RECORD_STATE_KEY)
        if not isinstance(record, SessionRecord):
            return None
        if method == "logging/setLevel":
            return record.model_copy(update={"log_level": params.get("level")})
        uri = params.get("uri")
        if not isinstance(uri, str):
            return None
        subscriptions = [existing for existing in record.subscriptions if existing != uri]
        if method == "resources/subscribe":
            subscriptions.append(uri)
        try:
            return SessionRecord.model_validate({**record.model_dump(), "subscriptions": subscriptions})
        except ValidationError:
            return None  # too many, or a URI too long: the record keeps what it had

    def _initialized(self, session_id: str, params: dict[str, Any], result: HandlerResult) -> SessionRecord | None:
        session = legacy_session(self._manager, session_id)
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        if session is None or not _SESSION_ID.match(session_id):
            return None
        try:
            client = InitializeRequestParams.model_validate(params, by_name=False)
            return SessionRecord(
                session_id=session_id,
                owner=owner_digest(session.owner),
                protocol_version=str(version),
                client=client.model_dump(mode="json", by_alias=True, exclude_none=True),
            )
        except ValidationError as error:
            logger.warning("cluster.session_not_shared", extra={"reason": str(error).splitlines()[0][:200]})
            return None

    # the ASGI wrapper

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """`app` (an /mcp endpoint over the session manager) continuing sessions held by other replicas."""
        return _Adopting(self, app)

    async def before(self, scope: Scope, session_id: str) -> None:
        """Before a request for `session_id`: adopt the session if this replica does not hold it."""
        if legacy_session(self._manager, session_id) is not None:
            await self._shared.refresh(session_id, self._ttl)
            if session_id in self._shared.stale:
                await self._catch_up(scope, session_id)
            return
        if not _SESSION_ID.match(session_id):
            return
        record = await self._shared.load(session_id)
        if record is None:
            return
        requestor = requestor_of(scope)
        if record.owner != owner_digest(requestor):
            # Answered by the SDK as an unknown id: the same 404, nothing that says the session exists.
            logger.warning("cluster.session_not_adopted", extra={"reason": "another principal", "key": _short(record)})
            return
        async with self._adopting:  # two requests of one session arriving at once adopt it once
            if legacy_session(self._manager, session_id) is not None:
                return
            try:
                adopted = await adopt_legacy_session(
                    self._manager, session_id, requestor, lambda connection: self._prepare(connection, record)
                )
            except ValidationError as error:
                reason = str(error).splitlines()[0][:200]
                logger.warning("cluster.session_not_adopted", extra={"reason": reason, "key": _short(record)})
                return
        if not adopted:
            logger.warning("cluster.session_not_adopted", extra={"reason": "session limit", "key": _short(record)})
            return
        await self._shared.adopted(session_id)
        self._prune()
        if self._opened is not None:
            self._opened(session_id)
        logger.info(
            "cluster.session_adopted", extra={"key": _short(record), "protocol_version": record.protocol_version}
        )
        if record.subscriptions and (connection := self.adopted.get(session_id)) is not None:
            await self._resubscribe(Request(scope), record, connection)

    async def _catch_up(self, scope: Scope, session_id: str) -> None:
        """Another replica adopted this session or changed its record since this copy last saw it (the session
        came back here): take the record's log level, and subscribe to what was subscribed meanwhile."""
        connection, record = self.copies.get(session_id), await self._shared.load(session_id)
        if record is not None and record.owner != owner_digest(requestor_of(scope)):
            return  # another principal's request (the SDK answers it 404): it leaves the copy stale
        self._shared.stale.discard(session_id)
        if connection is None or record is None:
            return
        seen = connection.state.get(RECORD_STATE_KEY)
        known = set(seen.subscriptions) if isinstance(seen, SessionRecord) else set()
        if record.log_level is not None:
            connection.state[self._log_level_key] = record.log_level
        connection.state[RECORD_STATE_KEY] = record
        logger.info("cluster.session_caught_up", extra={"key": _short(record)})
        if added := tuple(uri for uri in record.subscriptions if uri not in known):
            await self._resubscribe(Request(scope), record.model_copy(update={"subscriptions": added}), connection)

    async def _resubscribe(self, request: Request, record: SessionRecord, connection: Connection) -> None:
        """Subscribe the adopted session again to what it had subscribed to, as the request's principal."""
        entry = self._server.get_request_handler("resources/subscribe")
        if entry is None:
            return
        for uri in record.subscriptions:
            params = {"uri": uri}
            ctx: ServerRequestContext[Any, Any] = ServerRequestContext(
                session=ServerSession(_NoStream(request), connection),
                lifespan_context=None,
                protocol_version=record.protocol_version,
                method="resources/subscribe",
                params=params,
                request=request,
            )
            try:
                await entry.handler(ctx, SubscribeRequestParams.model_validate(params))
            except MCPError as error:  # no longer allowed, or gone: the session goes on without it
                logger.warning(
                    "cluster.subscription_not_restored",
                    extra={"key": _short(record), "error": error.error.message[:200]},
                )

    def _prepare(self, connection: Connection, record: SessionRecord) -> None:
        connection.client_params = record.initialize_params()
        connection.protocol_version = record.protocol_version
        connection.initialized.set()
        if record.log_level is not None:
            connection.state[self._log_level_key] = record.log_level
        connection.state[RECORD_STATE_KEY] = record
        self.adopted[record.session_id] = self.copies[record.session_id] = connection

    async def after(self, scope: Scope, session_id: str, status: int | None) -> None:
        """After a request for `session_id`: a successful DELETE ends the session everywhere."""
        if scope["method"] == "DELETE" and status is not None and status < 300:
            await self._shared.end(session_id)

    def _prune(self) -> None:
        """Forget the notes of sessions that ended here without a DELETE, whenever their number has doubled."""
        if len(self._shared) > self._prune_at:
            self._shared.forget_ended(lambda held: legacy_session(self._manager, held) is not None)
            self._prune_at = max(PRUNE_AT, 2 * len(self._shared))

    async def _ended_elsewhere(self, session_id: str) -> None:
        if await end_legacy_session(self._manager, session_id):
            logger.info("cluster.session_ended", extra={"reason": "deleted on another replica"})


class _NoStream:
    """The request channel of a subscription restored on adoption (the SDK's `DispatchContext`): no caller
    waits on it, so nothing is sent and nothing can be asked."""

    def __init__(self, request: Request) -> None:
        self.request_id: int | str | None = None
        self.transport = TransportContext(kind="streamable-http", can_send_request=False, headers=request.headers)
        self.message_metadata = ServerMessageMetadata(request_context=request)
        self.cancel_requested = anyio.Event()
        self.can_send_request = False

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        return

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return


class _Adopting:
    """The ASGI app `SessionSharing.wrap` returns."""

    def __init__(self, sharing: SessionSharing, app: ASGIApp) -> None:
        self.sharing, self._app = sharing, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = None
        if scope["type"] == "http":
            session_id = next(
                (value.decode("latin-1") for key, value in scope["headers"] if key == _SESSION_HEADER), None
            )
        if session_id is None:
            await self._app(scope, receive, send)
            return
        await self.sharing.before(scope, session_id)
        status: int | None = None

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self._app(scope, receive, watch)
        await self.sharing.after(scope, session_id, status)


def _short(record: SessionRecord) -> str:
    """A short, non-reversible mention of a session for logs (its id is a credential of sorts)."""
    return owner_digest({"session": record.session_id})[:12]


def requestor_of(scope: Scope) -> AuthorizationContext | None:
    """The credential identity the SDK's session manager binds a session to, for the request in `scope`."""
    user = scope.get("user")
    return authorization_context(user) if isinstance(user, AuthenticatedUser) else None
