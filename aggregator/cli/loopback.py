"""The loopback redirect of a native app's sign-in (RFC 8252 §7.3): a one-shot listener on 127.0.0.1.

The browser comes back to `http://127.0.0.1:<port>/callback?code=...&state=...`. The listener
answers it with a short page, checks `state` (and the RFC 9207 `iss`, when sent) and hands the
code over; any other path gets a 404 and is ignored. A mismatched state or an error from the
authorization server ends the wait with `failure` set. Nothing received is logged.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import anyio
from anyio.abc import Listener, SocketAttribute, SocketStream

CALLBACK_PATH = "/callback"
_MAX_REQUEST_BYTES = 16 * 1024
_READ_DEADLINE = 10.0
_DONE = "<h1>Signed in</h1><p>You can close this window and return to the terminal.</p>"
_FAILED = "<h1>Sign-in failed</h1><p>Return to the terminal for details.</p>"


class LoopbackRedirect:
    """Serves `listener` (on 127.0.0.1) until one authorization response arrives; closes it on exit."""

    def __init__(self, listener: Listener[SocketStream], *, state: str, issuer: str) -> None:
        self._listener = listener
        self._state = state
        self._issuer = issuer
        self._arrived = anyio.Event()
        self._code: str | None = None
        self.failure: str | None = None
        """Why the sign-in failed, once an authorization response said so (never contains a secret)."""
        self.uri = f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}{CALLBACK_PATH}"
        """The redirect URI for the authorization and token requests."""

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[LoopbackRedirect]:
        """Answer the browser while the block runs; stop listening when it ends."""
        async with self._listener, anyio.create_task_group() as tasks:
            tasks.start_soon(self._listener.serve, self._handle)
            try:
                yield self
            finally:
                tasks.cancel_scope.cancel()

    async def code(self) -> str | None:
        """Wait for the authorization response: its code, or None when it failed (see `failure`)."""
        await self._arrived.wait()
        return self._code

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            with anyio.move_on_after(_READ_DEADLINE):
                try:
                    target = await _request_target(stream)
                    if target is None or urlsplit(target).path != CALLBACK_PATH or self._arrived.is_set():
                        await _respond(stream, 404, "<h1>Not found</h1>")
                        return
                    self._accept(parse_qs(urlsplit(target).query))
                    failed = self.failure is not None
                    await _respond(stream, 400 if failed else 200, _FAILED if failed else _DONE)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return  # the browser went away; the wait goes on (or has its answer already)

    def _accept(self, query: dict[str, list[str]]) -> None:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        state, issuer = one("state") or "", one("iss")
        if not secrets.compare_digest(state.encode(), self._state.encode()):
            self.failure = "The browser came back with another login's state (a stale tab or a forged request)."
        elif issuer is not None and issuer != self._issuer:
            self.failure = f"The authorization response came from {issuer!r}, not {self._issuer!r}."
        elif (error := one("error")) is not None:
            description = one("error_description")
            self.failure = f"The authorization server refused the sign-in: {error}" + (
                f" ({description})." if description else "."
            )
        elif (code := one("code")) is None:
            self.failure = "The authorization response has no code."
        else:
            self._code = code
        self._arrived.set()


async def _request_target(stream: SocketStream) -> str | None:
    """The request target of a GET, read up to the end of the headers (bounded), or None."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = await stream.receive()
        received += chunk
        if len(received) > _MAX_REQUEST_BYTES:
            return None
    method, _, rest = received.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
    target = rest.rsplit(" ", 1)[0]
    return target if method == "GET" and target.startswith("/") else None


async def _respond(stream: SocketStream, status: int, body: str) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    payload = f"<!DOCTYPE html><html><body>{body}</body></html>".encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(payload)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    await stream.send(head.encode("latin-1") + payload)
