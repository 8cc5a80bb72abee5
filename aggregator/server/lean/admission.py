"""Which requests the lean path takes: those it can answer exactly as the SDK path would.

`Admission.admit` returns a `LeanRequest` or None (the SDK path serves it). It runs the checks
the SDK's transports and kernel run before a handler sees the request, with the SDK's own
functions where they are public (the 2026-07-28 inbound ladder, `Mcp-Param-*` validation, the
per-version params surface), and on any doubt says no: a refusal is always the SDK's to give.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.connection import Connection
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.inbound import (
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import Scope

from aggregator.errors import UnknownNameError
from aggregator.sdk import LegacySession, legacy_session
from aggregator.server.handlers import GatewayServer
from aggregator.server.lean.sessions import LegacyConnections
from aggregator.tasks.task import declares_tasks

LEAN_METHODS = frozenset({"tools/call", "tools/list"})
_QUESTION_CAPABILITIES = ("sampling", "elicitation", "roots")
_PARAM_HEADER_PREFIX = "mcp-param-"
_HEADER_ANNOTATION = '"x-mcp-header"'  # how a tool's input schema declares an `Mcp-Param-*` header
_MAX_REMEMBERED = 4096  # tools whose header declaration is remembered (bounded, whatever callers name)


@dataclass(frozen=True, slots=True)
class LeanRequest:
    """A request the lean path serves: its id, method, params (raw and typed), era and connection.

    `connection` is the SDK's: a 2025-11-25 session's own, or (2026-07-28) one built from the
    request's envelope as the SDK's single-exchange entry builds it. `session` is the
    2025-11-25 session's transport, None for a 2026-07-28 request.
    """

    id: int | str
    method: str
    raw_params: dict[str, Any] | None
    params: types.CallToolRequestParams | None
    version: str
    connection: Connection
    http: Request
    session: LegacySession | None = None
    session_id: str | None = None

    @property
    def modern(self) -> bool:
        return self.session is None

    @property
    def meta(self) -> types.RequestParamsMeta | None:
        """The request's `_meta`, typed as the SDK's kernel types it for the request's context."""
        if not self.raw_params or "_meta" not in self.raw_params:
            return None
        try:
            return types.RequestParams.model_validate(self.raw_params, by_name=False).meta
        except ValidationError:
            return None


class Admission:
    """Decides, per POST to /mcp, whether the lean path may serve it (see the module docstring)."""

    def __init__(
        self,
        handlers: GatewayServer,
        server: Server[Any],
        manager: StreamableHTTPSessionManager,
        connections: LegacyConnections,
        security: TransportSecuritySettings | None,
    ) -> None:
        self._handlers = handlers
        self._server = server
        self._manager = manager
        self._connections = connections
        self._security = TransportSecurityMiddleware(security)
        self._declared: dict[str, tuple[dict[str, Any], bool]] = {}

    async def admit(self, scope: Scope, body: bytes) -> LeanRequest | None:
        """The request in `body` if the lean path may serve it, else None."""
        message = _message(body)
        if message is None:
            return None
        request = Request(scope)
        headers = request.headers
        has_json, has_sse = check_accept_headers(request)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if not (has_json and has_sse) or content_type != "application/json":
            return None
        if scope.get("query_string") and "tools" in request.query_params:
            return None
        params = message.get("params")
        if isinstance(params, dict) and not self._plain(message["method"], params):
            return None
        version_header = headers.get("mcp-protocol-version")
        if version_header in MODERN_PROTOCOL_VERSIONS:
            return await self._modern(scope, request, message)
        if version_header is None or version_header in HANDSHAKE_PROTOCOL_VERSIONS:
            return await self._legacy(scope, request, message)
        return None

    def _plain(self, method: str, params: dict[str, Any]) -> bool:
        """No progress token, no input retry, and (for a call) an upstream tool with a lean transport."""
        meta = params.get("_meta")
        if isinstance(meta, dict) and meta.get("progressToken") is not None:
            return False
        if method != "tools/call":
            return True
        if declares_tasks(meta if isinstance(meta, dict) else None):
            return False  # the caller may be answered with a task: the tasks extension wraps the SDK path
        if "inputResponses" in params or "requestState" in params:
            return False
        name = params.get("name")
        admin = self._handlers.admin
        if not isinstance(name, str) or (admin is not None and name in admin.tools):
            return False
        try:
            entry = self._handlers.catalog.resolve_tool(name, lambda entry: bool(entry.item.name == name))
            if self._handlers.tasks.requires_task(entry.upstream, entry.original_name):
                return False  # a tool that runs only as a task: the SDK path refuses or serves it (tasks.required)
            return self._handlers.pool.get(entry.upstream).lean.available
        except UnknownNameError:
            return True  # an unknown name is answered with the catalog's own error, no upstream involved

    async def _legacy(self, scope: Scope, request: Request, message: dict[str, Any]) -> LeanRequest | None:
        session_id = request.headers.get("mcp-session-id")
        if session_id is None or (session := legacy_session(self._manager, session_id)) is None or not session.live:
            return None
        user = scope.get("user")
        if session.owner != (authorization_context(user) if isinstance(user, AuthenticatedUser) else None):
            return None
        connection = self._connections.get(session_id)
        if connection is None or not connection.initialize_accepted or not await session.admits(request):
            return None
        version = connection.protocol_version
        if _may_be_asked(connection.client_capabilities) or version in MODERN_PROTOCOL_VERSIONS:
            return None
        if self._handlers.tasks.stream_hold is not None and message["method"] == "tools/call":
            return None  # the SDK path closes a held stream for the caller to resume (tasks.stream_hold)
        try:
            params = _typed(message, version)
        except _Refused:
            return None
        raw = message.get("params")
        return LeanRequest(
            message["id"], message["method"], raw, params, version, connection, request, session, session_id
        )

    async def _modern(self, scope: Scope, request: Request, message: dict[str, Any]) -> LeanRequest | None:
        if await self._security.validate_request(request, is_post=True) is not None:
            return None
        raw_headers = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in scope["headers"]]
        if find_duplicated_routing_header(raw_headers) is not None:
            return None
        # As `dict(request.headers)`: names in lower case (the server's), a repeated header's first value.
        first_values = {key.lower(): value for key, value in reversed(raw_headers)}
        verdict = classify_inbound_request(message, headers=first_values)
        if not isinstance(verdict, InboundModernRoute):
            return None
        params = message.get("params") or {}
        if params.get("_meta", {}).get(LOG_LEVEL_META_KEY) is not None:
            return None  # the caller opted in to logs: today's path relays them
        version = verdict.protocol_version
        connection = Connection.from_envelope(version, verdict.client_info, verdict.client_capabilities)
        if _may_be_asked(connection.client_capabilities) or not self._param_headers_agree(
            message, request.headers, first_values
        ):
            return None
        try:
            typed = _typed(message, version)
        except _Refused:
            return None
        raw = message.get("params")
        return LeanRequest(message["id"], message["method"], raw, typed, version, connection, request)

    def _param_headers_agree(
        self, message: dict[str, Any], headers: Mapping[str, str], names: Mapping[str, str]
    ) -> bool:
        """The SDK's `Mcp-Param-*` check (`_mcp_param_rejection`): a mismatch is the SDK's to refuse.

        `names` holds the same headers as `headers`, by their lower-case names (cheaper to scan)."""
        if message["method"] != "tools/call":
            return True
        params = message.get("params") or {}
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(arguments, dict):
            return False
        has_param_headers = any(header.startswith(_PARAM_HEADER_PREFIX) for header in names)
        if not arguments and not has_param_headers:
            return True
        if not isinstance(name, str) or (schema := self._handlers.input_schema(name)) is None:
            return True
        if not has_param_headers and not self._declares_headers(name, schema):
            return True  # nothing declared, nothing sent: the check has nothing to compare
        return validate_mcp_param_headers(schema, arguments, headers) is None

    def _declares_headers(self, name: str, schema: dict[str, Any]) -> bool:
        """Whether `schema` declares an `Mcp-Param-*` header, remembered per tool while its schema is unchanged."""
        known = self._declared.get(name)
        if known is not None and known[0] == schema:
            return known[1]
        declares = _HEADER_ANNOTATION in json.dumps(schema)
        if len(self._declared) >= _MAX_REMEMBERED:
            self._declared.clear()
        self._declared[name] = (schema, declares)
        return declares


class _Refused(Exception):
    """The SDK kernel would refuse these params: the SDK path answers."""


def _typed(message: dict[str, Any], version: str) -> types.CallToolRequestParams | None:
    """The params as the SDK kernel validates them (`_Refused` when it would not accept them)."""
    method, params = message["method"], message.get("params")
    try:
        _methods.validate_client_request(method, version, params)
        if method == "tools/call":
            return types.CallToolRequestParams.model_validate(params or {}, by_name=False)
        types.PaginatedRequestParams.model_validate(params or {}, by_name=False)
    except (ValidationError, KeyError):
        raise _Refused from None
    if params and params.get("cursor") is not None:
        raise _Refused  # the gateway's list is one page; the SDK path judges a cursor
    return None


def _message(body: bytes) -> dict[str, Any] | None:
    """A single JSON-RPC request for a lean method, or None."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or message.get("method") not in LEAN_METHODS:
        return None
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        return None
    return message


def _may_be_asked(capabilities: types.ClientCapabilities | None) -> bool:
    """Whether the caller declared a capability an upstream could put a question to it under."""
    return capabilities is not None and any(getattr(capabilities, name) is not None for name in _QUESTION_CAPABILITIES)
