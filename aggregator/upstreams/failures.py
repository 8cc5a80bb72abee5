"""How failures on an upstream connection look, and how they are told: shared by the lifecycle and the request path."""

from __future__ import annotations

import random

import anyio
import httpx2
from pydantic import ValidationError

from aggregator.errors import GatewayError

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    httpx2.HTTPError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)
"""What a broken connection looks like from the SDK and the HTTP/stdio layers under it."""


def leaf(error: BaseException) -> BaseException:
    """The first real exception inside (possibly nested) exception groups from transport task groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def describe(error: BaseException) -> str:
    """One line for `last_error` and the log: the exception's type and message, never a traceback.

    The gateway's own errors are sentences that name the culprit: their message alone.
    """
    error = leaf(error)
    if isinstance(error, ValidationError):
        return "sent a response that is not valid MCP"
    if isinstance(error, GatewayError):
        return str(error)
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def refused_credential(error: BaseException) -> bool:
    """Whether the upstream refused the gateway's credential (HTTP 401 or 403)."""
    error = leaf(error)
    return isinstance(error, httpx2.HTTPStatusError) and error.response.status_code in (401, 403)


def backoff(failures: int, initial: float, maximum: float) -> float:
    """Exponential backoff with equal jitter: half the delay is fixed, half random."""
    delay = min(maximum, initial * 2**failures)
    return float(delay / 2 + random.uniform(0, delay / 2))
