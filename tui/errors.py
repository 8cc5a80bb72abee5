"""What the console could not do, as sentences for the operator:

ConsoleError        what the console reports to the operator
 ├── Refused        the gateway answered with an error; the message is the gateway's text
 ├── TokenRejected  the gateway refused the operator's token (HTTP 401/403); the message says why
 └── Unreachable    no answer: the connection is down, was lost, or the call timed out
"""

from __future__ import annotations


class ConsoleError(Exception):
    """Something the console could not do; the message is a sentence for the operator."""


class Refused(ConsoleError):
    """Raised when the gateway answers a request with an error (an MCP error or an error result)."""


class TokenRejected(ConsoleError):
    """Raised when the gateway answers HTTP 401 or 403: no token, or one it does not accept (expired,
    revoked, wrong signature). The message is the gateway's reason (`WWW-Authenticate` or the body)."""

    def __init__(self, reason: str, *, token_given: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token_given = token_given

    def __str__(self) -> str:
        if not self.token_given:
            return f"no token: the gateway requires one ({self.reason})"
        return f"the gateway rejected the token: {self.reason}"


class Unreachable(ConsoleError):
    """Raised when the gateway does not answer: not connected, connection lost, or timed out."""
