"""`mcp-aggregator tui`: check that the gateway takes the token, then run the console.

A missing or refused token is said in one line on stderr, with a non-zero exit, before the
full-screen app starts; an unreachable gateway is not fatal (the console shows it and retries).
"""

from __future__ import annotations

import sys

import anyio

from tui.client import is_connection_failure
from tui.errors import TokenRejected
from tui.target import HttpTarget, admin_url

TOKEN_HINT = "pass --token or set $MCP_AGGREGATOR_TOKEN"
REFUSED = 2
"""The exit status when the gateway refuses the token (or there is none)."""


def launch(url: str, token: str | None) -> int:
    """Run the console against the gateway at `url` with `token`; the process's exit status."""
    target = HttpTarget(admin_url(url), token)
    if (problem := anyio.run(token_problem, target)) is not None:
        print(f"mcp-aggregator tui: {problem}", file=sys.stderr)
        return REFUSED
    from tui.app import OperatorApp  # Textual loads only once the token is known to work

    OperatorApp(target).run()
    return 0


async def token_problem(target: HttpTarget) -> str | None:
    """One line on why the gateway at `target` refuses the token, or None (accepted, or not reachable)."""
    try:
        async with target.open():
            return None
    except Exception as error:  # the session's top level: a failed session is for the console to show
        if isinstance(error, TokenRejected) and not error.token_given:
            return f"no token: the gateway at {target.label} requires one ({error.reason}); {TOKEN_HINT}"
        if isinstance(error, TokenRejected):
            return f"the gateway at {target.label} rejected the token: {error.reason}"
        if is_connection_failure(error):
            return None
        raise
