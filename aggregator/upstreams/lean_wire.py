"""Kept-alive HTTP/1.1 POSTs to one upstream URL: an asyncio protocol per connection, httptools parsing.

The lean transport's client (`lean_http`), chosen by measurement: `bench/lean_clients.py` puts a
client exchange at about 0.1 ms of CPU with httptools (llhttp, C) against 0.5 ms with aiohttp and
1.9 ms with httpx2. It does what the lean transport needs and no more: POST a body with the given
headers, read the answer's status and headers, then its body whole (`read`) or as it arrives
(`iter_any`, for SSE). Idle connections are reused newest first and dropped after `keepalive`
seconds (below the upstream server's own idle timeout, so a reused connection is not one the
server is closing), or at once when the answer asked to close.

Failures read as the lean transport has always reported them: no connection at all (refused,
unresolvable, TLS refused) is `NotSent`; a connection that ends before the answer's head is
`ConnectionResetError`, or the `OSError` that ended it; one that ends inside the body is
`PayloadError`; no byte for `read_timeout` seconds, or no connection within `connect_timeout`,
is `TimeoutError`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import httptools

from aggregator.upstreams.lean import NotSent

_FORBIDDEN = frozenset("\r\n\0")
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
"""Headers this client writes itself (an auth flow's copy of the request carries its own)."""
_HOST = "host"
"""The line `_line` gives a `Host` header (no real line: a line ends with CRLF)."""
_MAX_LINES = 1024
"""Header lines remembered (bounded: tool names and session ids vary)."""


class PayloadError(Exception):
    """The connection ended, or the answer broke the protocol, inside an answer's body."""


class WireResponse:
    """An answer whose head has arrived; its body is read with `read` or `iter_any`, then `release`d."""

    def __init__(self, connection: _Connection, pool: WirePool) -> None:
        self._connection = connection
        self._pool = pool
        self.status = connection.status
        self.headers = connection.headers
        """Header names in lower case; a repeated header keeps its first value."""
        self._released = False

    async def read(self) -> bytes:
        """The whole body."""
        connection = self._connection
        while not connection.complete:
            if connection.ended:
                raise PayloadError("the upstream closed the connection inside the answer")
            await connection.wait()
        body = b"".join(connection.chunks)
        connection.chunks.clear()
        return body

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive."""
        connection = self._connection
        while True:
            if connection.chunks:
                data = b"".join(connection.chunks)
                connection.chunks.clear()
                yield data
            elif connection.complete:
                return
            elif connection.ended:
                raise PayloadError("the upstream closed the connection inside the answer")
            else:
                await connection.wait()

    def release(self) -> None:
        """Give the connection back to the pool if the answer was read whole and may be followed, else close it."""
        if not self._released:
            self._released = True
            self._pool.release(self._connection)


class WirePool:
    """Connections to one upstream URL (see the module docstring)."""

    def __init__(self, url: str, connect_timeout: float, read_timeout: float, keepalive: float) -> None:
        parts = urlsplit(url)
        self._hostname = parts.hostname or ""
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._port = parts.port or (443 if self._tls else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._request_line = f"POST {target} HTTP/1.1\r\n"
        self._host = parts.netloc.rpartition("@")[2]
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._keepalive = keepalive
        self._idle: list[tuple[_Connection, float]] = []
        self._lines: dict[tuple[str, str], str] = {}
        self._generation = 0
        """Bumped by `aclose`: connections opened before it are not kept once released."""

    async def post(self, body: bytes, headers: Mapping[str, str]) -> WireResponse:
        """Send one POST; the answer once its head has arrived."""
        host = self._host
        lines = [self._request_line, "", f"content-length: {len(body)}\r\n"]
        for name, value in headers.items():
            line = self._lines.get((name, value))
            if line is None:
                line = self._line(name, value)
            if line is _HOST:  # as an auth flow's request names it (a signature may cover it)
                host = value
            else:
                lines.append(line)
        lines[1] = f"host: {host}\r\n"
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1", errors="strict")
        connection = self._idle_connection() or await self._connect()
        try:
            connection.send(head + body)
            while not connection.headers_done:
                if connection.ended:
                    if connection.error is not None:
                        raise connection.error
                    raise ConnectionResetError("the upstream closed the connection before answering")
                await connection.wait()
        except BaseException:
            connection.close()
            raise
        return WireResponse(connection, self)

    def _line(self, name: str, value: str) -> str:
        """The head's line for one header ("" for one this client writes itself, `_HOST` for the host);
        remembered, since most of a request's headers are the same on every request."""
        if not _FORBIDDEN.isdisjoint(name) or not _FORBIDDEN.isdisjoint(value) or ":" in name:
            raise ValueError(f"The header {name!r} cannot be sent: it holds a line break, a NUL or a colon.")
        lowered = name.lower()
        line = _HOST if lowered == "host" else "" if lowered in _FRAMING else f"{name}: {value}\r\n"
        if len(self._lines) >= _MAX_LINES:
            self._lines.clear()
        self._lines[name, value] = line
        return line

    def release(self, connection: _Connection) -> None:
        if connection.reusable and connection.generation == self._generation:
            self._idle.append((connection, time.monotonic()))
        else:
            connection.close()

    async def aclose(self) -> None:
        """Close every idle connection; those in use close when released. The pool stays usable."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()

    def _idle_connection(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection, since = self._idle.pop()
            if not connection.ended and now - since < self._keepalive:
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, self._read_timeout, self._generation),
                    self._hostname,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._hostname if self._tls else None,
                )
        except TimeoutError:
            where = f"{self._hostname}:{self._port}"
            raise TimeoutError(f"No connection to {where} within {self._connect_timeout} s") from None
        except OSError as error:
            raise NotSent(f"Cannot connect to host {self._hostname}:{self._port}: {error}") from None
        return connection


class _Connection(asyncio.Protocol):
    """One connection: the answer being received, parsed by httptools as bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float, generation: int) -> None:
        self.generation = generation
        self._loop = loop
        self._read_timeout = read_timeout
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.complete = False
        self.ended = False
        self.error: OSError | None = None
        self._keep_alive = False

    @property
    def reusable(self) -> bool:
        return self.complete and self._keep_alive and not self.ended and not self.chunks

    def send(self, data: bytes) -> None:
        assert self._transport is not None
        self.status, self.headers, self.chunks = 0, {}, []
        self.headers_done = self.complete = False
        self._transport.write(data)

    async def wait(self) -> None:
        """Until the next thing happens on the connection (bytes, the end); `TimeoutError` after the read timeout."""
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self._read_timeout, self._timed_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self.ended = True

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @staticmethod
    def _timed_out(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError("the upstream sent nothing within the read timeout"))

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's transports are no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.error = ConnectionError(f"the upstream's answer is not valid HTTP: {error}")
            self.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        if isinstance(exc, OSError) and self.error is None:
            self.error = exc
        self._wake()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self._keep_alive = self._parser.should_keep_alive()
