"""One log line for every refused request, never a traceback.

Refusals the gateway decides itself (a bad token, a body over the limits, a passthrough denial)
log their own line with the reason and mark the request (`limits.mark_refusal_logged`). Every
other 4xx answer (the MCP SDK's transports, Starlette's routing, the registry API, /metrics) is
logged here as `http.refused` with the method, path, status and client address, so no malformed
request goes unrecorded. The SDK logs an unparsable `/messages/` body with a traceback that quotes
the body; `quiet_sdk_parse_failures` drops that record, since this line already stands for it.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator.policy.limits import REFUSAL_LOGGED, printable

logger = logging.getLogger(__name__)

_SSE_LOGGER = "mcp.server.sse"
_SSE_PARSE_FAILURE = "Failed to parse message"


class RefusalLogMiddleware:
    """Logs `http.refused` for each 4xx answer whose refusal was not already logged with a reason."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def logged(message: Message) -> None:
            refused = message["type"] == "http.response.start" and 400 <= message["status"] < 500
            if refused and not scope.get("state", {}).get(REFUSAL_LOGGED):
                client = scope.get("client")
                logger.warning(
                    "http.refused",
                    extra={
                        "method": printable(scope.get("method", "?")),
                        "path": printable(scope.get("path", "")),
                        "status": message["status"],
                        "client": client[0] if client else "?",
                    },
                )
            await send(message)

        await self._app(scope, receive, logged)


class _SdkParseFailure(logging.Filter):
    """Drops the SDK's `Failed to parse message` record (a traceback holding the caller's body)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == _SSE_LOGGER and record.msg == _SSE_PARSE_FAILURE)


_SDK_PARSE_FAILURE = _SdkParseFailure()  # one instance: adding it again is a no-op


def quiet_sdk_parse_failures() -> None:
    """Install the filter on the SDK's SSE logger (idempotent)."""
    logging.getLogger(_SSE_LOGGER).addFilter(_SDK_PARSE_FAILURE)
