"""The lean transport's HTTP/1.1 client (`upstreams.lean_wire`) against scripted servers on loopback.

Each server reads one request head and body per exchange and answers as its script says: whole,
streamed in parts, cut short, malformed, or not at all. The failures must read as the lean
transport reports them (`NotSent`, `ConnectionResetError`, `PayloadError`, `TimeoutError`), and
kept-alive connections must be reused only when the last answer allows it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from aggregator.upstreams.lean import NotSent
from aggregator.upstreams.lean_wire import PayloadError, WirePool

pytestmark = pytest.mark.anyio

DEADLINE = 10.0
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]
"""Answers one request (the connection's n-th); returns whether to keep serving the connection."""


class Upstream:
    """A loopback server running `script` for every request; counts connections and keeps request heads."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        index = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"content-length")
                )
                self.heads.append(head)
                self.bodies.append(await reader.readexactly(length))
                if not await self.script(reader, writer, index):
                    break
                index += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(script: Script) -> AsyncIterator[tuple[str, Upstream]]:
    upstream = Upstream(script)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp?x=1", upstream
    finally:
        server.close()


def json_answer(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"content-type: application/json", b"content-length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def answer_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
    writer.write(json_answer(b'{"n": %d}' % index))
    return True


def pool(url: str, read_timeout: float = DEADLINE) -> WirePool:
    return WirePool(url, connect_timeout=DEADLINE, read_timeout=read_timeout, keepalive=DEADLINE)


async def test_answers_come_back_whole_on_one_kept_alive_connection() -> None:
    async with serving(answer_json) as (url, upstream):
        client = pool(url)
        for index in range(3):
            with anyio.fail_after(DEADLINE):
                response = await client.post(b'{"q": 1}', {"accept": "application/json", "x-user": "alice"})
                assert response.status == 200
                assert response.headers["content-type"] == "application/json"
                assert await response.read() == b'{"n": %d}' % index
            response.release()
        await client.aclose()
    assert upstream.connections == 1
    assert upstream.heads[0].startswith(b"POST /mcp?x=1 HTTP/1.1\r\n")
    assert b"\r\nx-user: alice\r\n" in upstream.heads[0]
    assert b"\r\nhost: 127.0.0.1:" in upstream.heads[0]
    assert upstream.bodies == [b'{"q": 1}'] * 3


async def test_an_auth_flow_copy_of_the_request_does_not_repeat_framing_headers() -> None:
    async with serving(answer_json) as (url, upstream):
        client = pool(url)
        with anyio.fail_after(DEADLINE):
            response = await client.post(b"{}", {"Host": "signed.example", "Content-Length": "2", "x-sig": "abc"})
            await response.read()
        response.release()
    head = upstream.heads[0].lower()
    assert head.count(b"content-length") == 1
    assert head.count(b"host:") == 1
    assert b"host: signed.example" in head


async def test_an_answer_that_closes_the_connection_is_not_reused() -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(json_answer(b"{}", b"connection: close"))
        await writer.drain()
        return False

    async with serving(closing) as (url, upstream):
        client = pool(url)
        for _ in range(2):
            with anyio.fail_after(DEADLINE):
                response = await client.post(b"{}", {})
                assert await response.read() == b"{}"
            response.release()
    assert upstream.connections == 2


async def test_a_streamed_answer_is_read_in_parts_as_they_arrive() -> None:
    more = anyio.Event()

    async def streaming(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"b\r\ndata: one\n\n\r\n")
        await writer.drain()
        await more.wait()
        writer.write(b"b\r\ndata: two\n\n\r\n0\r\n\r\n")
        return True

    async with serving(streaming) as (url, _):
        client = pool(url)
        parts = []
        with anyio.fail_after(DEADLINE):
            response = await client.post(b"{}", {})
            async for part in response.iter_any():
                parts.append(part)
                more.set()  # the second part is only sent once the first was read
        response.release()
    assert b"".join(parts) == b"data: one\n\ndata: two\n\n"
    assert parts[0] == b"data: one\n\n"


async def test_nothing_listening_is_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = pool(f"http://127.0.0.1:{port}/mcp")
    with anyio.fail_after(DEADLINE), pytest.raises(NotSent, match=f"127.0.0.1:{port}"):
        await client.post(b"{}", {})


async def test_a_connection_closed_before_the_answer_is_a_reset() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        return False

    async with serving(hang_up) as (url, _):
        with anyio.fail_after(DEADLINE), pytest.raises(ConnectionResetError, match="before answering"):
            await pool(url).post(b"{}", {})


async def test_a_connection_closed_inside_the_body_is_a_payload_error() -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"partial')
        await writer.drain()
        return False

    async with serving(cut_short) as (url, _):
        response = await pool(url).post(b"{}", {})
        with anyio.fail_after(DEADLINE), pytest.raises(PayloadError):
            await response.read()
        response.release()


async def test_a_malformed_answer_is_a_connection_error_naming_it() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        return True

    async with serving(garbage) as (url, _):
        with anyio.fail_after(DEADLINE), pytest.raises(ConnectionError, match="not valid HTTP"):
            await pool(url).post(b"{}", {})


async def test_an_upstream_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> bool:
        await reader.read()  # until the client gives up and closes
        return False

    async with serving(silent) as (url, _):
        with anyio.fail_after(DEADLINE), pytest.raises(TimeoutError, match="read timeout"):
            await pool(url, read_timeout=0.2).post(b"{}", {})


@pytest.mark.parametrize(("name", "value"), [("x-user", "alice\r\nx-admin: yes"), ("x-bad\nname", "v"), ("a:b", "v")])
async def test_a_header_that_would_split_the_request_is_refused_by_name(name: str, value: str) -> None:
    async with serving(answer_json) as (url, upstream):
        with pytest.raises(ValueError, match=repr(name).replace("\\", "\\\\")):
            await pool(url).post(b"{}", {name: value})
    assert upstream.heads == []


async def test_after_aclose_idle_connections_are_gone_and_the_pool_still_works() -> None:
    async with serving(answer_json) as (url, upstream):
        client = pool(url)
        response = await client.post(b"{}", {})
        await response.read()
        response.release()
        await client.aclose()
        with anyio.fail_after(DEADLINE):
            response = await client.post(b"{}", {})
            assert await response.read() == b'{"n": 0}'  # a new connection's first answer
        response.release()
    assert upstream.connections == 2


async def test_an_answer_released_unread_does_not_leave_its_connection_for_reuse() -> None:
    async with serving(answer_json) as (url, upstream):
        client = pool(url)
        for _ in range(2):
            with anyio.fail_after(DEADLINE):
                response = await client.post(b"{}", {})
            response.release()  # its body may still be on the wire: never mistaken for the next answer
    assert upstream.connections == 2
