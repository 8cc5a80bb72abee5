"""The one adapter over the mcp SDK's internals.

Everything else in the gateway uses the SDK's public API. Each function here names the private
attribute or behaviour it relies on and the public API that is missing; when the SDK grows that
API, the change is made here and nowhere else.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, cast

import anyio
import httpcore2
import httpx2
import mcp.client.stdio as _mcp_stdio
from mcp.client._input_required import run_input_required_driver as _run_input_required_driver
from mcp.client._transport import TransportStreams as _TransportStreams
from mcp.client.session import ClientSession, _clamp_inbound_ttl, _later_revision_fields
from mcp.server import Server
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner, serve_connection
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from mcp_types import CONNECTION_CLOSED
from mcp_types import methods as _methods
from starlette.requests import Request

TransportStreams = _TransportStreams
"""The (read, write) stream pair a client transport yields. Missing: a public alias (`mcp.client._transport`)."""

run_input_required_driver = _run_input_required_driver
"""Drives an upstream's 2026-07-28 `input_required` rounds for a caller that speaks 2025-11-25.
Missing: the driver `Client.call_tool` uses is not exported (`mcp.client._input_required`)."""

_sdk_logger = logging.getLogger("mcp.server.streamable_http_manager")

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


# --- the lean relay path (aggregator.server.lean, aggregator.upstreams.lean) -----------------------


class ResultShaper:
    """Shapes a handler's result for the wire exactly as the SDK's server kernel does for `server`.

    Missing: a public function for `ServerRunner._serialize` (cache hints, the per-version result
    sieve, 2026-07-28 `resultType` and the `serverInfo` stamp). The lean path answers without a
    `ServerRunner`, and must answer byte-for-byte what the SDK path would.
    """

    def __init__(self, server: Server[Any]) -> None:
        view = cast("Server[Any]", _ShapingView(server))
        self._runner: ServerRunner[Any] = ServerRunner(view, cast(Connection, None), None)

    def shape(self, method: str, version: str, result: Any) -> dict[str, Any]:
        """The wire form of `result`, answering `method` at protocol `version`."""
        return self._runner._serialize(method, version, result)


class _ShapingView:
    """What `ServerRunner._serialize` reads off its server (`cache_hints`, `server_info_stamp`), the
    stamp copied as plain JSON instead of by `copy.deepcopy`: the same fresh, unaliased dict, for
    less than half the CPU. Missing: a public way to shape a result; the server's identity is fixed when
    it is built, as the SDK's own once-per-server dump of it assumes."""

    def __init__(self, server: Server[Any]) -> None:
        self._server = server
        self._stamp: dict[str, Any] = server.server_info_stamp

    @property
    def cache_hints(self) -> Any:
        return self._server.cache_hints

    @property
    def server_info_stamp(self) -> dict[str, Any]:
        return cast("dict[str, Any]", _json_copy(self._stamp))


def _json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars)."""
    if isinstance(value, dict):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_copy(item) for item in value]
    return value


def inbound_result(method: str, version: str, raw: dict[str, Any]) -> dict[str, Any]:
    """An upstream's raw result as the SDK client checks it before typing it (`ClientSession.send_request`).

    Raises `ValidationError` for a result the negotiated revision does not allow. Missing: the
    client's inbound pipeline (`_clamp_inbound_ttl`, `validate_server_result`,
    `_later_revision_fields`) is not public; the lean path reads upstream answers without a session.
    """
    _clamp_inbound_ttl(raw)
    with suppress(KeyError):  # a method the table does not know: nothing to check it against
        _methods.validate_server_result(method, version, raw)
    if not (foreign := _later_revision_fields(method, version)).isdisjoint(raw):
        raw = {key: value for key, value in raw.items() if key not in foreign}
    return raw


@dataclass(frozen=True, slots=True)
class LegacySession:
    """A 2025-11-25 session the SDK's session manager holds: its transport and the credential that owns it."""

    transport: StreamableHTTPServerTransport
    owner: AuthorizationContext | None

    @property
    def live(self) -> bool:
        """Whether the session still serves requests (not terminated, idle timer not run out)."""
        idle = self.transport.idle_scope
        return not self.transport.is_terminated and (idle is None or not idle.cancel_called)

    async def admits(self, request: Request) -> bool:
        """Whether the transport's Host/Origin/Content-Type checks pass (DNS-rebinding protection).

        Missing: the transport's `TransportSecurityMiddleware` (`_security`) is private.
        """
        security: TransportSecurityMiddleware = self.transport._security
        return await security.validate_request(request, is_post=True) is None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Count a request in flight on the session, as the transport's `handle_request` does.

        While any request is in flight the session's idle countdown is suspended; it restarts when
        the last one ends. Missing: a public hook for a request served outside the transport
        (`_requests_in_flight`, `_idle_timeout`).
        """
        transport = self.transport
        idle, timeout = transport.idle_scope, transport._idle_timeout
        if idle is None or timeout is None:
            yield
            return
        transport._requests_in_flight += 1
        idle.deadline = math.inf
        try:
            yield
        finally:
            transport._requests_in_flight -= 1
            if not transport._requests_in_flight:
                idle.deadline = anyio.current_time() + timeout


def legacy_session(manager: StreamableHTTPSessionManager, session_id: str) -> LegacySession | None:
    """The live session `session_id` of `manager`, or None.

    Missing: the manager exposes neither its sessions (`_server_instances`) nor their owners
    (`_session_owners`).
    """
    transport = manager._server_instances.get(session_id)
    if transport is None:
        return None
    return LegacySession(transport, manager._session_owners.get(session_id))


# --- stdio upstreams (aggregator.upstreams.child) --------------------------------------------------

_spawned: ContextVar[list[Any] | None] = ContextVar("mcp_aggregator_spawned", default=None)


@contextmanager
def recording_spawns() -> Iterator[list[Any]]:
    """The processes `mcp.client.stdio.stdio_client` starts in this block (in this task), to read their
    `returncode` when the session breaks.

    Missing: `stdio_client` does not expose its process; its spawn function
    (`mcp.client.stdio._create_platform_compatible_process`) is wrapped once to record what it returns
    while a block is open (a context variable, so concurrent connections never see each other's).
    """
    if not getattr(_mcp_stdio._create_platform_compatible_process, "_records_spawns", False):
        spawn = _mcp_stdio._create_platform_compatible_process

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            process = await spawn(*args, **kwargs)
            if (processes := _spawned.get()) is not None:
                processes.append(process)
            return process

        recorded._records_spawns = True  # type: ignore[attr-defined]
        _mcp_stdio._create_platform_compatible_process = recorded
    processes: list[Any] = []
    token = _spawned.set(processes)
    try:
        yield processes
    finally:
        _spawned.reset(token)


def http_transport_on(backend: httpcore2.AsyncNetworkBackend, keepalive_expiry: float) -> httpx2.AsyncHTTPTransport:
    """An httpx2 transport (no proxy from the environment, system CAs) whose connections `backend` makes.

    Missing public API: httpx2's transport takes no network backend; it only ever uses its `_pool`.
    """
    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=httpx2.create_ssl_context(trust_env=False),
        keepalive_expiry=keepalive_expiry,
        network_backend=backend,
    )
    return transport


# --- 2025-11-25 sessions shared by replicas (aggregator.cluster.adoption) -------------------------


async def adopt_legacy_session(
    manager: StreamableHTTPSessionManager,
    session_id: str,
    owner: AuthorizationContext | None,
    prepare: Callable[[Connection], None],
) -> bool:
    """Open session `session_id` for `owner` in `manager` as if this process had created it.

    The session starts already initialized: `prepare` fills its `Connection` (negotiated version,
    the client's initialize params, per-connection state) before its first request is read. It then
    ends like any other session (DELETE, idle timeout, manager shutdown). False (nothing opened) at
    the manager's session limit; True if the session is open (already, or now).

    Missing: the manager can only mint session ids (`_admit_session`, `uuid4().hex`) and runs a
    session with `serve_loop`, whose `Connection` waits for `initialize`; adopting reaches
    `_server_instances`, `_session_owners`, `_task_group`, `_lifespan_state` and `_discard_session`.
    """
    if session_id in manager._server_instances:
        return True
    if manager.max_sessions is not None and len(manager._server_instances) >= manager.max_sessions:
        return False
    group = manager._task_group
    if group is None:
        raise RuntimeError("The session manager is not running.")
    transport = StreamableHTTPServerTransport(
        mcp_session_id=session_id,
        is_json_response_enabled=manager.json_response,
        event_store=manager.event_store,
        security_settings=manager.security_settings,
        retry_interval=manager.retry_interval,
        idle_timeout=manager.session_idle_timeout,
    )

    async def run_server(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with transport.connect() as (read_stream, write_stream):
            dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
                read_stream, write_stream, inline_methods=frozenset({"initialize"})
            )
            connection = Connection.for_loop(dispatcher, session_id=session_id)
            prepare(connection)
            task_status.started()
            try:
                with transport.idle_scope or anyio.CancelScope():
                    await serve_connection(
                        manager.app, dispatcher, connection=connection, lifespan_state=manager._lifespan_state
                    )
            except Exception:  # the session's task top level, as the SDK's own sessions: logged, then discarded
                _sdk_logger.exception("Adopted session crashed")
            finally:
                await manager._discard_session(session_id, transport)

    if owner is not None:
        manager._session_owners[session_id] = owner
    manager._server_instances[session_id] = transport
    try:
        await group.start(run_server)
    except BaseException:
        await manager._discard_session(session_id, transport)
        raise
    return True


async def end_legacy_session(manager: StreamableHTTPSessionManager, session_id: str) -> bool:
    """End session `session_id` of `manager` as a DELETE would (it answers 404 from now on); False if unknown.

    Missing: a public way to terminate a session (`_server_instances`, `_discard_session`).
    """
    transport = manager._server_instances.get(session_id)
    if transport is None:
        return False
    await manager._discard_session(session_id, transport)
    return True
