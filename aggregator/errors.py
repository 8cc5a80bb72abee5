"""The gateway's exceptions: one tree, converted to MCP errors in exactly one place (`aggregator.server.edge`).

    GatewayError
    ├── ConfigError          a configuration file is invalid; carries every problem found
    ├── AuthenticationError  a bearer token is missing or not acceptable (reason for the log, never the token)
    ├── AccessDeniedError    the caller may not do what it asked; says what was missing
    ├── RateLimitedError     the caller is over its rate limit; says when to retry
    ├── LimitExceededError   a request is too large or too many are in flight; names the limit
    │   └── ConcurrencyLimitError      too many calls in flight for one principal or upstream
    ├── MissingCapabilityError  the request needs a client capability the caller did not declare
    ├── UnknownNameError     a caller named a tool/prompt/resource the catalog does not have
    ├── NginxError           a rendered nginx config failed validation, or nginx could not be reloaded
    ├── LoginError           signing in, refreshing or reading stored tokens failed (`mcp-aggregator login`)
    ├── SearchError          the tool finder cannot answer (aggregator/search/errors.py has its subclasses)
    ├── SharedStateUnavailableError  what another replica holds (a task) cannot be reached: Redis is unavailable
    └── UpstreamError        something went wrong talking to one upstream (names it)
        ├── UpstreamUnavailableError   not connected (down, starting, or reconnecting)
        ├── UpstreamTimeoutError       no answer within the upstream's timeout
        ├── UpstreamRejectedError      the upstream answered with a JSON-RPC error
        ├── UpstreamProcessError       a stdio upstream's command did not start, or its process ended
        ├── UpstreamProtocolError      the upstream answered with something that is not valid MCP
        └── UpstreamTaskCancelledError the upstream's own task behind a gateway task ended cancelled by the upstream

Messages are sentences that name the culprit; they never contain secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file: where it is and what is wrong."""

    file: str
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path or '<root>'}: {self.reason}"


class ConfigError(GatewayError):
    """Raised when a configuration file cannot be used; lists every issue, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        noun = "problem" if len(issues) == 1 else "problems"
        super().__init__(f"{len(issues)} configuration {noun}:\n" + "\n".join(f"  {issue}" for issue in issues))


class AuthenticationError(GatewayError):
    """Raised when a request carries no acceptable bearer token.

    `reason` is for the gateway's log and the 401 description; it never contains the token.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AccessDeniedError(GatewayError):
    """Raised when a principal asks for something its scopes do not allow."""

    def __init__(self, message: str, required_scope: str | None = None) -> None:
        self.required_scope = required_scope
        super().__init__(message)


class RateLimitedError(GatewayError):
    """Raised when a principal has used up its request budget; `retry_after` is in seconds."""

    def __init__(self, subject: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"Rate limit exceeded for '{subject}'; retry after {retry_after:.1f} s.")


class LimitExceededError(GatewayError):
    """Raised when a request passes a configured bound (size, depth, concurrency); the message names it."""


class ConcurrencyLimitError(LimitExceededError):
    """Raised when a principal or an upstream already has its maximum of calls in flight."""


class MissingCapabilityError(GatewayError):
    """Raised when an upstream needs input (sampling, elicitation, roots) the caller cannot give.

    `capability` is the client capability the caller did not declare.
    """

    def __init__(self, capability: str) -> None:
        self.capability = capability
        super().__init__(f"This request needs the '{capability}' client capability, which the caller did not declare.")

    @property
    def required_capabilities(self) -> dict[str, Any]:
        """The missing capability as the error's `data.requiredCapabilities` (the shape of client capabilities)."""
        return {self.capability: {}}


class UnknownNameError(GatewayError):
    """Raised when a caller asks for a capability the gateway does not offer."""

    def __init__(self, kind: str, name: str, suggestions: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = suggestions
        message = f"Unknown {kind} '{name}'."
        if suggestions:
            message += " Did you mean " + " or ".join(f"'{s}'" for s in suggestions) + "?"
        super().__init__(message)


class UpstreamError(GatewayError):
    """Base of the errors that concern one upstream server."""

    def __init__(self, upstream: str, message: str) -> None:
        self.upstream = upstream
        super().__init__(message)


class UpstreamUnavailableError(UpstreamError):
    """Raised when a request needs an upstream that is not connected right now."""

    def __init__(self, upstream: str, cause: str) -> None:
        self.cause = cause
        super().__init__(upstream, f"Upstream '{upstream}' is unavailable: {cause}")


class UpstreamTimeoutError(UpstreamError):
    """Raised when an upstream does not answer a request within its configured timeout."""

    def __init__(self, upstream: str, method: str, timeout: float) -> None:
        self.method = method
        self.timeout = timeout
        super().__init__(upstream, f"Upstream '{upstream}' did not answer {method} within {timeout:g} s.")


class UpstreamRejectedError(UpstreamError):
    """Raised when an upstream answers a request with a JSON-RPC error; keeps its code."""

    def __init__(self, upstream: str, code: int, message: str, data: object = None) -> None:
        self.code = code
        self.data = data
        super().__init__(upstream, f"Upstream '{upstream}' returned an error: {message}")


class UpstreamProcessError(UpstreamError):
    """Raised when a stdio upstream's command cannot be started, or its process ends on its own.

    The message names the command line and says why (the OS error, or the exit status and the last
    lines of the process's stderr); the values of its environment are masked.
    """

    def __init__(self, upstream: str, message: str) -> None:
        super().__init__(upstream, f"Upstream '{upstream}': {message}")


class UpstreamProtocolError(UpstreamError):
    """Raised when an upstream's answer does not parse as the MCP result that was asked for."""

    def __init__(self, upstream: str, method: str, problem: str = "an invalid answer") -> None:
        self.method = method
        super().__init__(upstream, f"Upstream '{upstream}' sent {problem} to {method}.")


class UpstreamTaskCancelledError(UpstreamError):
    """Raised when the upstream's own task behind a gateway task (`aggregator.upstreams.tasks`) ends `cancelled`
    without the gateway having asked: there is neither a result nor an error to record."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, f"Upstream '{upstream}' cancelled its task before it produced a result.")


class SharedStateUnavailableError(GatewayError):
    """Raised when a request names something another replica may hold (a task) and Redis, through which the
    replicas share it, is unavailable now; the caller may try again. Raised alike whether it exists or not."""


class NginxError(GatewayError):
    """Raised when nginx refuses a rendered config (`nginx -t`) or cannot be signalled to reload.

    The running nginx keeps its previous config; the message carries nginx's own explanation.
    """


class LoginError(GatewayError):
    """Raised when signing in, refreshing or reading the stored tokens fails; says why and what to do."""
