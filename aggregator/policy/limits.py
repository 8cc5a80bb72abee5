"""Bounds on what a caller may send: body size, JSON nesting depth, batch length, token count.

Every check here is linear in the body (a few passes in C, one bounded pass in Python that stops
as soon as a limit is passed), so no body, however crafted (escaped quotes, backslash runs, deep
nesting, huge batches, millions of keys), costs much more than reading it. Large bodies are
checked on a worker thread (a small, bounded pool), so the event loop keeps answering other
callers, `/healthz` included, while one caller's body is judged.

`RequestLimitsMiddleware` applies the checks to POSTs to the MCP paths; `/auth/validate` calls
`BodyInspector` itself, because nginx expects its refusals as 403.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterable
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator.config.settings import LimitsSettings

logger = logging.getLogger(__name__)

REFUSAL_LOGGED = "aggregator.refusal_logged"
"""Key in a request's ASGI `state`: set once the request's refusal has been logged with its reason."""

_LEADING_SPACE = re.compile(rb"[ \t\r\n]*")
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b"[]{},")))
_OPENERS = frozenset(b"[{")
_COMMA = ord(",")
_THREAD_THRESHOLD = 32 * 1024  # smaller bodies are judged in well under a millisecond, on the loop
_CHECKING_THREADS = 2  # large bodies checked at once; more wait their turn without blocking anything


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """The structural limits on one request body (from `LimitsSettings`)."""

    max_bytes: int
    max_depth: int
    max_batch: int
    max_tokens: int

    @classmethod
    def from_settings(cls, limits: LimitsSettings) -> BodyLimits:
        return cls(
            max_bytes=limits.max_request_bytes,
            max_depth=limits.max_json_depth,
            max_batch=limits.max_batch_length,
            max_tokens=limits.max_json_tokens,
        )

    def too_large(self) -> str:
        """The refusal of a body over `max_bytes`."""
        return f"Request body exceeds {self.max_bytes} bytes."


def body_problem(body: bytes, limits: BodyLimits) -> str | None:
    """Why `body` breaks a limit on depth, batch length or token count, or None.

    Linear, and mostly in C: escapes are dropped first (a backslash pair, then an escaped quote),
    after which every quote left opens or closes a string, so splitting on quotes leaves the text
    between strings; of that, only `[]{},` matter. Tokens are strings, brackets and commas: every
    value a parser would build is one of them or sits between two of them, so their count bounds
    the cost of parsing the body. Depth and batch length are read in one Python pass over at most
    `max_tokens + 1` structure bytes, stopping at the first limit passed; then the token count is
    checked. Malformed JSON is not judged here (the parser that reads it refuses it); for valid
    JSON this reading is exact.
    """
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    strings = (unescaped.count(b'"') + 1) // 2  # an unterminated string runs to the end, as a parser reads it
    # Even parts lie between strings; past 2 * max_tokens + 1 quotes the rest stays one (odd, dropped) part.
    between = unescaped.split(b'"', 2 * limits.max_tokens + 1)[0::2]
    structure = b"".join(between).translate(None, _NOT_STRUCTURE)
    leading = _LEADING_SPACE.match(body)
    start = leading.end() if leading else 0
    if problem := _depth_or_batch(structure[: limits.max_tokens + 1], body[start : start + 1] == b"[", limits):
        return problem
    if strings + len(structure) > limits.max_tokens:
        return _too_many_tokens(limits)
    return None


def _depth_or_batch(structure: bytes, is_batch: bool, limits: BodyLimits) -> str | None:
    """The first nesting or batch limit `structure` (only `[]{},`) passes, or None."""
    depth = commas_in_batch = 0
    for byte in structure:
        if byte in _OPENERS:
            depth += 1
            if depth > limits.max_depth:
                return f"JSON nesting deeper than {limits.max_depth} levels."
        elif byte != _COMMA:
            depth -= 1
        elif is_batch and depth == 1:
            commas_in_batch += 1
            if commas_in_batch >= limits.max_batch:
                return f"JSON-RPC batch longer than {limits.max_batch} messages."
    return None


def _too_many_tokens(limits: BodyLimits) -> str:
    return f"JSON body with more than {limits.max_tokens} tokens (strings, brackets and commas)."


@dataclass
class BodyInspector:
    """Applies `body_problem`, on a worker thread for large bodies (at most `_CHECKING_THREADS` at once)."""

    limits: BodyLimits
    _limiter: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(_CHECKING_THREADS))

    async def problem(self, body: bytes) -> str | None:
        """Why `body` may not be passed on, or None."""
        if len(body) > self.limits.max_bytes:
            return self.limits.too_large()
        if len(body) <= _THREAD_THRESHOLD:
            return body_problem(body, self.limits)
        return await anyio.to_thread.run_sync(body_problem, body, self.limits, limiter=self._limiter)


async def read_bounded(chunks: AsyncIterable[bytes], max_bytes: int) -> bytes | None:
    """The body made of `chunks`, or None as soon as it grows past `max_bytes` (the rest is not read)."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)


def printable(text: str, limit: int = 200) -> str:
    """Caller-supplied `text` made safe for a log line or a header: printable ASCII, at most `limit` characters.

    Control and non-ASCII characters become Python escapes (`\\n`, `\\xe9`, `\\u043a`), double quotes
    become apostrophes (the text may sit inside a quoted-string), and a longer text is cut with `...`.
    """
    cut = text if len(text) <= limit else text[:limit] + "..."
    if cut.isascii() and cut.isprintable() and '"' not in cut and "\\" not in cut:
        return cut
    return "".join(
        "'" if char == '"' else char if " " <= char <= "~" and char != "\\" else char.encode("unicode_escape").decode()
        for char in cut
    )


def mark_refusal_logged(scope: Scope) -> None:
    """Note in the request's state that its refusal was logged with a reason (so it is logged once)."""
    scope.setdefault("state", {})[REFUSAL_LOGGED] = True


class RequestLimitsMiddleware:
    """Reads a POST body to the MCP paths (bounded), refuses it if too large, too deep, too long a
    batch or too many tokens, and hands the same bytes on. JSON-RPC error bodies name the limit."""

    def __init__(self, app: ASGIApp, limits: BodyLimits, paths: tuple[str, ...] = ("/mcp", "/messages/")) -> None:
        self._app = app
        self._inspector = BodyInspector(limits)
        self._paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "POST" or not path.startswith(self._paths):
            await self._app(scope, receive, send)
            return
        disconnected = False

        async def chunks() -> AsyncIterable[bytes]:
            nonlocal disconnected
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected = True
                    return
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        body = await read_bounded(chunks(), self._inspector.limits.max_bytes)
        if disconnected:
            return
        if body is None:
            await _refuse(scope, send, 413, self._inspector.limits.too_large())
            return
        if (problem := await self._inspector.problem(body)) is not None:
            await _refuse(scope, send, 400, problem)
            return
        await self._app(scope, replay_body(body, receive), send)


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    client = scope.get("client")
    logger.warning(
        "request.refused",
        extra={
            "path": printable(scope.get("path", "")),
            "status": status,
            "reason": message,
            "client": client[0] if client else "?",
        },
    )
    mark_refusal_logged(scope)
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the already-read `body` once, then whatever the client sends next."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
