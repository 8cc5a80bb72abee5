"""Bounds on what a caller may send: body size, JSON nesting depth, batch length (HTTP middleware)."""

from __future__ import annotations

import json
import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)  # JSON strings may hold brackets: drop them first
_BRACKETS = re.compile(rb"[\[\]{}]")


class RequestLimitsMiddleware:
    """Reads a POST body to the MCP paths (bounded), refuses it if too large, too deep or too long a
    batch, and hands the same bytes on. JSON-RPC error bodies say which limit and by how much."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        max_depth: int,
        max_batch: int,
        paths: tuple[str, ...] = ("/mcp", "/messages/"),
    ) -> None:
        self._app = app
        self._max_bytes = max_bytes
        self._max_depth = max_depth
        self._max_batch = max_batch
        self._paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "POST" or not path.startswith(self._paths):
            await self._app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self._max_bytes:
                await _refuse(send, 413, f"Request body exceeds {self._max_bytes} bytes.")
                return
            if not message.get("more_body", False):
                break
        if (problem := self._check(bytes(body))) is not None:
            logger.warning("request.refused", extra={"path": path, "reason": problem})
            await _refuse(send, 400, problem)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self._app(scope, replay, send)

    def _check(self, body: bytes) -> str | None:
        depth = 0
        for bracket in _BRACKETS.findall(_STRINGS.sub(b"", body)):
            if bracket in b"[{":
                depth += 1
                if depth > self._max_depth:
                    return f"JSON nesting deeper than {self._max_depth} levels."
            else:
                depth -= 1
        if body.lstrip()[:1] == b"[":
            try:
                batch = json.loads(body)
            except ValueError:
                return None  # malformed JSON: the MCP layer answers with a parse error
            if isinstance(batch, list) and len(batch) > self._max_batch:
                return f"JSON-RPC batch of {len(batch)} messages; at most {self._max_batch} are allowed."
        return None


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
