"""Upstream callbacks that reach the downstream caller: questions (sampling, elicitation, roots),
log messages, and the caller's client capabilities on 2026-07-28 requests."""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_types import CLIENT_CAPABILITIES_META_KEY

from aggregator.sdk import Stamp, wrap_request_stamp
from aggregator.upstreams.caller import current_caller
from aggregator.upstreams.tasks import tasks_declared


def speak_for_the_caller(client: Client) -> None:
    """On 2026-07-28 every request carries the client's capabilities; send the caller's, not the gateway's.

    The gateway can relay sampling, elicitation and roots, but only for a caller that offers them:
    with the caller's own capabilities the upstream refuses what the caller cannot answer
    (-32021), exactly as if the caller were connected directly. The tasks extension is the
    gateway's to declare, only where it follows the upstream's task (`tasks_declared`). The SDK
    has no per-request hook for this, so the session's request stamp is wrapped (`aggregator.sdk`).
    """

    def for_caller(stamp: Stamp) -> Stamp:
        def stamp_for_caller(data: dict[str, Any], options: Any) -> None:
            stamp(data, options)
            caller = current_caller.get()
            meta = data.get("params", {}).get("_meta")
            if isinstance(meta, dict) and CLIENT_CAPABILITIES_META_KEY in meta:
                capabilities = meta[CLIENT_CAPABILITIES_META_KEY] if caller is None else caller.declared_capabilities()
                meta[CLIENT_CAPABILITIES_META_KEY] = tasks_declared(capabilities)

        return stamp_for_caller

    wrap_request_stamp(client.session, for_caller)


async def _relay(request: types.InputRequest) -> types.InputResponse | types.ErrorData:
    caller = current_caller.get()
    if caller is None:
        return types.ErrorData(code=types.INVALID_REQUEST, message=f"No caller is waiting to answer {request.method}.")
    return await caller.ask(request)


async def relay_sampling(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult | types.ErrorData:
    return await _relay(types.CreateMessageRequest(params=params))  # type: ignore[return-value]


async def relay_elicitation(
    context: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult | types.ErrorData:
    return await _relay(types.ElicitRequest(params=params))  # type: ignore[return-value]


async def relay_roots(context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
    return await _relay(types.ListRootsRequest())  # type: ignore[return-value]


async def relay_log(params: types.LoggingMessageNotificationParams) -> None:
    caller = current_caller.get()
    if caller is not None:
        await caller.log(params)
