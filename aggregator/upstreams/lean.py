"""The lean side of one upstream: its shared session reached below the SDK's client layers.

The gateway's hot path (`aggregator.server.lean`) forwards `tools/call` on the upstream's shared
session without the SDK's client session and dispatcher: `LeanLink.session.send_request` frames
the JSON-RPC request as the SDK client would (the same `_meta` stamp, headers and id space apart
from the SDK's), sends it through a lean transport (`lean_http` for streamable HTTP), and reads the
answer with the SDK's own inbound checks. It raises what the SDK's session raises (`MCPError`,
`ValidationError`, connection errors), so `RequestPath` maps the outcome to the same gateway
errors, and the circuit breaker and the lifecycle hear of it as they do today.

A request the lean transport could not even send (no connection to the upstream) raises
`NotSent`; the upstream then sends it the SDK way, so that failure reads exactly as it does today.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import encode_header_value, mcp_param_headers, x_mcp_header_map
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    LOG_LEVEL_META_KEY,
    PROTOCOL_VERSION_META_KEY,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter

from aggregator.sdk import inbound_result
from aggregator.tracing import propagate
from aggregator.upstreams.caller import Caller, current_caller
from aggregator.upstreams.tasks import tasks_declared

_ResultT = TypeVar("_ResultT")

CLIENT_INFO = {"name": "mcp-aggregator", "version": "0.1.0"}
"""What the gateway's upstream client says it is (`Upstream` builds its SDK client with the same)."""
LOG_LEVEL = "debug"
"""The log level the gateway's SDK client asks upstreams for; the lean stamp asks for the same for 2025-11-25
callers (a 2026-07-28 caller on the lean path asked for no logs, so its calls ask for none)."""
FIRST_ID = 1 << 40
"""Lean request ids start here, far from the SDK client's counter (from 0), so the two never collide."""

QUESTIONS = frozenset({"sampling/createMessage", "elicitation/create", "roots/list"})
"""An upstream's questions to the caller (answered through `Caller.ask`, as the SDK client's relay does)."""


class NotSent(Exception):
    """The lean transport could not deliver the request at all (no connection); send it the SDK way."""


Exchange = Callable[[dict[str, Any], dict[str, str], Caller], Awaitable[dict[str, Any]]]
"""Sends one JSON-RPC request (body, headers) and returns the JSON-RPC response or error message."""


class LeanSession:
    """Quacks like the SDK's `ClientSession.send_request` for the one upstream `RequestPath` serves.

    `version` is the protocol version the shared session negotiated; `schema_of` the upstream's
    tool input schemas (for 2026-07-28 `Mcp-Param-*` headers, as the SDK client sends).
    """

    def __init__(self, exchange: Exchange, version: str, schema_of: InputSchemas) -> None:
        self._exchange = exchange
        self.version = version
        self._schema_of = schema_of
        self._ids = itertools.count(FIRST_ID)

    async def send_request(
        self,
        request: types.ClientRequest | types.Request[Any, Any],
        result_type: TypeAdapter[_ResultT],
        progress_callback: Any = None,
    ) -> _ResultT:
        """Send `request`; its typed result, or the errors the SDK's session raises."""
        caller = current_caller.get()
        if caller is None or progress_callback is not None:
            raise RuntimeError("the lean session serves a caller's request without progress only")
        data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
        method: str = data["method"]
        params: dict[str, Any] = data.setdefault("params", {})
        headers = self._stamp(method, params, caller)
        propagate(params, headers)
        message = await self._exchange({"jsonrpc": "2.0", "id": next(self._ids), **data}, headers, caller)
        if "error" in message:
            raise MCPError.from_error_data(types.ErrorData.model_validate(message["error"], by_name=False))
        result = message.get("result")
        if not isinstance(result, dict):
            raise MCPError(types.PARSE_ERROR, "Failed to parse JSON response: the result is not an object")
        return result_type.validate_python(inbound_result(method, self.version, result), by_name=False)

    def _stamp(self, method: str, params: dict[str, Any], caller: Caller) -> dict[str, str]:
        """The `_meta` and headers the SDK client's stamp puts on a request, with the caller's capabilities."""
        headers = {"mcp-protocol-version": self.version}
        if self.version not in MODERN_PROTOCOL_VERSIONS:
            return headers
        meta = params.setdefault("_meta", {})
        meta[PROTOCOL_VERSION_META_KEY] = self.version
        meta[CLIENT_INFO_META_KEY] = CLIENT_INFO
        meta[CLIENT_CAPABILITIES_META_KEY] = tasks_declared(caller.declared_capabilities())  # never tasks here
        if not caller.modern:  # a 2026-07-28 caller on this path asked for no logs: the upstream need send none
            meta.setdefault(LOG_LEVEL_META_KEY, LOG_LEVEL)
        headers["mcp-method"] = method
        name = params.get("name")
        if isinstance(name, str):
            headers["mcp-name"] = encode_header_value(name)
            if method == "tools/call" and (declared := self._schema_of.header_map(name)) is not None:
                headers.update(mcp_param_headers(declared, params.get("arguments") or {}))
        return headers


class LeanClient:
    """What `RequestPath` reads off a client: its `session`. Holds the lean session of one connection."""

    def __init__(self, session: LeanSession) -> None:
        self.session = session


class InputSchemas:
    """An upstream's tool input schemas by its own tool names, rebuilt when its listing changes."""

    def __init__(self, tools: Callable[[], tuple[types.Tool, ...]]) -> None:
        self._tools = tools
        self._seen: tuple[types.Tool, ...] | None = None
        self._schemas: dict[str, dict[str, Any]] = {}
        self._header_maps: dict[str, dict[tuple[str, ...], str]] = {}

    def __call__(self, name: str) -> dict[str, Any] | None:
        self._refresh()
        return self._schemas.get(name)

    def header_map(self, name: str) -> dict[tuple[str, ...], str] | None:
        """The `x-mcp-header` declarations of tool `name`'s schema (`x_mcp_header_map`), worked out once per listing."""
        self._refresh()
        declared = self._header_maps.get(name)
        if declared is None and (schema := self._schemas.get(name)) is not None:
            declared = self._header_maps[name] = x_mcp_header_map(schema)
        return declared

    def _refresh(self) -> None:
        tools = self._tools()
        if tools is not self._seen:
            self._schemas = {tool.name: dict(tool.input_schema) for tool in tools}
            self._header_maps = {}
            self._seen = tools
