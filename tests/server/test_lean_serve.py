"""The HTTP server `mcp-aggregator serve` runs: httptools with corked writes (`cli.serve.server_config`).

The lean path's 2026-07-28 checks compare the `Mcp-Method` and `Mcp-Name` headers with the body,
so the server must hand the app header values without the optional whitespace around them (h11
did; httptools must too). Writes of one event-loop step leave together, which must neither hold
back a streamed answer's events nor lose the end of an answer the server closes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import pytest
import uvicorn
from anyio.abc import SocketStream
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.cli.serve import server_config

pytestmark = pytest.mark.anyio

DEADLINE = 10.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals alone: the test runner owns them."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[int]:
    """Serve `app` with the gateway's uvicorn settings on a loopback port; yield the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    config = server_config(app)
    config.lifespan = "off"
    server = _Server(config)
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve, [listener])
        try:
            yield listener.getsockname()[1]
        finally:
            server.should_exit = True
    listener.close()


async def read_answer(stream: SocketStream) -> tuple[bytes, bytes]:
    """One HTTP/1.1 answer with a Content-Length: its head and body."""
    data = b""
    with anyio.fail_after(DEADLINE):
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += await stream.receive()
    return head, body


async def header_echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = json.dumps({key.decode(): value.decode() for key, value in scope["headers"]}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


async def test_header_values_reach_the_app_without_surrounding_whitespace() -> None:
    async with serving(header_echo) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(
            b"POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Method:  \t tools/call \t \r\nMcp-Name:\techo__echo\t\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        head, body = await read_answer(stream)
    assert head.startswith(b"HTTP/1.1 200")
    headers = json.loads(body)
    assert headers["mcp-method"] == "tools/call"
    assert headers["mcp-name"] == "echo__echo"


async def test_answers_on_one_kept_alive_connection_arrive_whole_and_in_order() -> None:
    async with serving(header_echo) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        for index in range(3):
            await stream.send(f"GET /{index} HTTP/1.1\r\nHost: x\r\nX-Index: {index}\r\n\r\n".encode())
            head, body = await read_answer(stream)
            assert head.startswith(b"HTTP/1.1 200")
            assert json.loads(body)["x-index"] == str(index)


async def test_a_streamed_answer_leaves_event_by_event() -> None:
    """The first event reaches the client while the app still waits to send the second."""
    first_seen = anyio.Event()

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        with anyio.fail_after(DEADLINE):
            await first_seen.wait()  # never set unless the first event was flushed on its own
        await send({"type": "http.response.body", "body": b"data: two\n\n"})

    async with serving(streaming) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        with anyio.fail_after(DEADLINE):
            while b"data: one" not in data:
                data += await stream.receive()
            assert b"data: two" not in data
            first_seen.set()
            while b"0\r\n\r\n" not in data:
                data += await stream.receive()
    assert data.index(b"data: one") < data.index(b"data: two")


async def test_an_answer_the_server_closes_the_connection_after_is_sent_in_full() -> None:
    """`Connection: close` from the client: the corked answer is flushed before the close."""
    async with serving(header_echo) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, body = await read_answer(stream)
        assert b"connection: close" in head.lower()
        assert json.loads(body)["connection"] == "close"
        with anyio.fail_after(DEADLINE), pytest.raises(anyio.EndOfStream):
            await stream.receive()


async def test_a_malformed_request_gets_400_not_a_hang() -> None:
    async with serving(header_echo) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Name: y\r\n\r\n")
        data = b""
        with anyio.fail_after(DEADLINE):
            try:
                while True:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    assert data.startswith(b"HTTP/1.1 400")
