"""Which of the gateway's own tools an MCP endpoint offers: agents' `/mcp`, operators' `/mcp/admin`.

    /mcp          upstream tools, `intelligent_tool_finder` and its discovery companions
                  (`describe_tool`, `call_tool`: they only ever reach upstream tools the caller may call)
    /mcp/admin    all of that, plus the management tools (registry, scopes groups, tokens, activity)

Both endpoints share everything else: authentication, the policy's decisions (a caller sees and
calls on `/mcp/admin` only the management tools scopes.yml grants it), the limits, both protocol
eras. On `/mcp` (and `/sse`, and `aggregator stdio`) the management tools are neither listed nor
callable: a model should not be offered `remove_service` or `generate_token`, and a call there is
refused with a sentence naming `/mcp/admin`. The operator setting `management_tools_on_mcp` turns
them back on there for clients that predate `/mcp/admin`.

The endpoint of a request is a mark the HTTP edge puts on its ASGI scope (`AdminEndpoint`), never
anything the caller sends (the path decides which route, hence which mark).
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.errors import AccessDeniedError
from aggregator.tools.finder import CALL, DESCRIBE, FINDER

MCP_PATH = "/mcp"
ADMIN_PATH = "/mcp/admin"
AGENT_TOOLS = frozenset({FINDER, DESCRIBE, CALL})
"""The gateway's own tools that `/mcp` offers; every other one is a management tool."""
_MARK = "aggregator.admin_endpoint"


class AdminEndpoint:
    """`app` serving `/mcp/admin`: the requests it receives are marked as the management endpoint's.

    A class, not a closure: Starlette's `Route` hands an instance the raw ASGI scope.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_MARK] = True
        await self._app(scope, receive, send)


def on_admin_endpoint(request: Any) -> bool:
    """Whether `request` (the SDK's `ctx.request`: an HTTP request, or None over stdio) came to `/mcp/admin`."""
    scope = getattr(request, "scope", None)
    return isinstance(scope, dict) and scope.get(_MARK) is True


def is_management(name: str) -> bool:
    """Whether the gateway tool `name` is a management tool (served on `/mcp/admin` only, by default)."""
    return name not in AGENT_TOOLS


def served_elsewhere(name: str) -> AccessDeniedError:
    """The refusal of a management tool called on `/mcp`."""
    return AccessDeniedError(
        f"'{name}' is a management tool, served on {ADMIN_PATH}, not on {MCP_PATH}: call it on {ADMIN_PATH} "
        f"with the same token ({MCP_PATH} offers the upstream tools and {FINDER})."
    )
