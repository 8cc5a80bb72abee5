"""The downstream caller of the request being served, as the upstream side needs to reach it.

Upstreams ask for sampling, elicitation and roots in the middle of a call, and send log
messages. The SDK runs an upstream's callbacks in the context of the request that caused them,
so `current_caller` (set by every downstream handler) tells them whom to ask, and the answer
goes back to exactly that caller, never to another one on the same upstream.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from aggregator.errors import MissingCapabilityError
from aggregator.sdk import connection_of, run_input_required_driver

LOG_LEVELS: tuple[types.LoggingLevel, ...] = get_args(types.LoggingLevel)
LOG_LEVEL_STATE_KEY = "mcp_aggregator.log_level"

_CAPABILITY = {
    "sampling/createMessage": ("sampling", types.ClientCapabilities(sampling=types.SamplingCapability())),
    "elicitation/create": ("elicitation", types.ClientCapabilities(elicitation=types.ElicitationCapability())),
    "roots/list": ("roots", types.ClientCapabilities(roots=types.RootsCapability())),
}
_RESULT_TYPES: dict[str, type[types.Result]] = {
    "sampling/createMessage": types.CreateMessageResult,
    "elicitation/create": types.ElicitResult,
    "roots/list": types.ListRootsResult,
}


@dataclass(frozen=True, slots=True)
class Caller:
    """One downstream request: its session, era and declared client capabilities."""

    context: ServerRequestContext[Any, Any]

    @property
    def modern(self) -> bool:
        """Whether the caller speaks the stateless 2026-07-28 era (no server-to-client requests)."""
        return self.context.protocol_version in MODERN_PROTOCOL_VERSIONS

    def client_name(self) -> str | None:
        """The calling program as it introduced itself (`clientInfo`: `name/version`), or None."""
        params = self.context.session.client_params
        if params is None:
            return None
        info = params.client_info
        return f"{info.name}/{info.version}" if info.version else info.name

    def declared_capabilities(self) -> dict[str, Any]:
        """The client capabilities this caller declared, as they go on the wire."""
        connection = connection_of(self.context.session)
        capabilities = connection.client_capabilities
        if capabilities is None:
            return {}
        dumped: dict[str, Any] = capabilities.model_dump(by_alias=True, mode="json", exclude_none=True)
        return dumped

    def missing_capability(self, method: str) -> str | None:
        """The capability `method` needs that this caller did not declare, or None."""
        name, needed = _CAPABILITY[method]
        return None if self.context.session.check_client_capability(needed) else name

    async def ask(self, request: types.InputRequest) -> types.InputResponse | types.ErrorData:
        """Put an upstream's question to this caller as a server-to-client request (2025-11-25 era)."""
        if self.modern:
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message=f"The caller speaks 2026-07-28 and cannot receive {request.method} requests mid-call.",
            )
        if (missing := self.missing_capability(request.method)) is not None:
            return types.ErrorData(
                code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                message=f"The caller did not declare the '{missing}' capability needed for {request.method}.",
            )
        result_type = _RESULT_TYPES[request.method]
        try:
            result = await self.context.session.send_request(request, result_type)
        except MCPError as error:
            return error.error
        return result  # type: ignore[return-value]

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        """Relay an upstream's log message to this caller, at the caller's own level.

        2026-07-28 callers opt in per request (the SDK gates that); 2025-11-25 callers set a level
        for their session with `logging/setLevel`, kept in the connection's state.
        """
        threshold = connection_of(self.context.session).state.get(LOG_LEVEL_STATE_KEY)
        if threshold is not None and LOG_LEVELS.index(params.level) < LOG_LEVELS.index(threshold):
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # logging is deprecated in 2026-07-28 but still served
            await self.context.session.send_log_message(
                params.level, params.data, params.logger, related_request_id=self.context.request_id
            )


current_caller: ContextVar[Caller | None] = ContextVar("current_caller", default=None)
_InteractiveT = TypeVar("_InteractiveT", types.CallToolResult, types.GetPromptResult, types.ReadResourceResult)


async def interactive(
    attempt: Callable[[types.InputResponses | None, str | None], Awaitable[_InteractiveT | types.InputRequiredResult]],
    responses: types.InputResponses | None,
    state: str | None,
) -> _InteractiveT | types.InputRequiredResult:
    """Run a request that may need input from the caller.

    A 2026-07-28 caller gets the upstream's `InputRequiredResult` as it is and retries by itself
    (its retry carries the responses and the upstream's opaque state back through here). For a
    2025-11-25 caller the gateway drives the loop, putting each question to the caller as a
    server-to-client request.
    """
    first = await attempt(responses, state)
    caller = current_caller.get()
    if not isinstance(first, types.InputRequiredResult) or caller is None:
        return first
    if caller.modern:
        for request in (first.input_requests or {}).values():
            if (missing := caller.missing_capability(request.method)) is not None:
                raise MissingCapabilityError(missing)
        return first

    async def dispatch(key: str, request: types.InputRequest) -> types.InputResponse | types.ErrorData:
        return await caller.ask(request)

    return await run_input_required_driver(first, dispatch=dispatch, retry=attempt)
