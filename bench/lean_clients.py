"""Which HTTP client the lean relay path should use: httpx2, aiohttp, raw h11 and httptools clients, side by side.

Run from the repository root::

    python bench/lean_clients.py            # 4 x 500 calls per client, interleaved
    python bench/lean_clients.py --calls 200

One echo upstream (`examples.servers.echo`) runs as a subprocess. Each client keeps one kept-alive
connection and POSTs the same 2026-07-28 `tools/call` (one JSON-RPC message, JSON answer), as the
lean path does. Rounds rotate the clients so machine noise lands on all alike. Printed: p50 and p99
of one exchange, and this process's CPU per exchange (the part of a hop's cost the client owns).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPOSITORY = Path(__file__).resolve().parent.parent
VERSION = "2026-07-28"
BODY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "echo",
            "arguments": {"text": "hello"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": VERSION,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
).encode()
HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": VERSION,
    "mcp-method": "tools/call",
    "mcp-name": "echo",
}

Exchange = Callable[[], Awaitable[bytes]]


async def httpx2_client(url: str) -> tuple[Exchange, Callable[[], Awaitable[None]]]:
    import httpx2

    client = httpx2.AsyncClient(trust_env=False, timeout=30)

    async def exchange() -> bytes:
        response = await client.post(url, content=BODY, headers=HEADERS)
        return response.content

    return exchange, client.aclose


async def aiohttp_client(url: str) -> tuple[Exchange, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=False), auto_decompress=False, trust_env=False
    )

    async def exchange() -> bytes:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            return await response.read()

    return exchange, session.close


async def h11_client(url: str) -> tuple[Exchange, Callable[[], Awaitable[None]]]:
    """One connection, h11 state machine by hand: the floor of what a pure-Python HTTP/1.1 client costs."""
    import h11

    parts = urlsplit(url)
    headers = [("host", parts.netloc), ("content-length", str(len(BODY))), *HEADERS.items()]
    state: dict[str, Any] = {}

    async def connect() -> None:
        state["reader"], state["writer"] = await asyncio.open_connection(parts.hostname, parts.port)
        state["connection"] = h11.Connection(h11.CLIENT)

    async def exchange() -> bytes:
        try:
            return await attempt()
        except h11.RemoteProtocolError:  # the server closed the idle kept-alive connection (uvicorn: 5 s)
            await connect()
            return await attempt()

    async def attempt() -> bytes:
        reader, writer, connection = state["reader"], state["writer"], state["connection"]
        data = connection.send(h11.Request(method="POST", target=parts.path, headers=headers))
        data += connection.send(h11.Data(data=BODY)) + connection.send(h11.EndOfMessage())
        writer.write(data)
        body = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                connection.start_next_cycle()
                return bytes(body)

    async def close() -> None:
        state["writer"].close()

    await connect()
    return exchange, close


async def httptools_client(url: str) -> tuple[Exchange, Callable[[], Awaitable[None]]]:
    """One connection, an asyncio protocol with httptools (llhttp, C) parsing the answer: the floor in C."""
    import httptools

    parts = urlsplit(url)
    head = "".join(
        [f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\ncontent-length: {len(BODY)}\r\n"]
        + [f"{name}: {value}\r\n" for name, value in HEADERS.items()]
        + ["\r\n"]
    ).encode()
    loop = asyncio.get_running_loop()

    class Answer(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.body: list[bytes] = []
            self.done: asyncio.Future[bytes] | None = None
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            assert self.done is not None
            self.done.set_result(b"".join(self.body))
            self.body = []

        def connection_lost(self, exc: Exception | None) -> None:
            if self.done is not None and not self.done.done():
                self.done.set_exception(ConnectionResetError())

    state: dict[str, Answer] = {}

    async def connect() -> None:
        _, state["protocol"] = await loop.create_connection(Answer, parts.hostname, parts.port)

    async def exchange() -> bytes:
        try:
            return await attempt()
        except ConnectionResetError:  # the server closed the idle kept-alive connection (uvicorn: 5 s)
            await connect()
            return await attempt()

    async def attempt() -> bytes:
        protocol = state["protocol"]
        if protocol.transport is None or protocol.transport.is_closing():
            raise ConnectionResetError
        protocol.done = loop.create_future()
        protocol.transport.write(head + BODY)
        return await protocol.done

    async def close() -> None:
        if (transport := state["protocol"].transport) is not None:
            transport.close()

    await connect()
    return exchange, close


CLIENTS = {"httpx2": httpx2_client, "aiohttp": aiohttp_client, "h11": h11_client, "httptools": httptools_client}


async def measure(url: str, calls: int, rounds: int) -> dict[str, tuple[list[float], float]]:
    exchanges = {}
    closers = []
    for name, make in CLIENTS.items():
        exchange, close = await make(url)
        for _ in range(20):
            answer = await exchange()
            assert b'"hello"' in answer, answer[:200]
        exchanges[name] = exchange
        closers.append(close)
    results: dict[str, tuple[list[float], float]] = {name: ([], 0.0) for name in CLIENTS}
    names = list(CLIENTS)
    for turn in range(rounds):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            latencies, cpu = results[name]
            started_cpu = time.process_time()
            for _ in range(calls // rounds):
                started = time.perf_counter()
                await exchanges[name]()
                latencies.append(time.perf_counter() - started)
            results[name] = (latencies, cpu + time.process_time() - started_cpu)
    for close in closers:
        await close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    echo = subprocess.Popen(
        [sys.executable, "-m", "examples.servers.echo", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout is not None
        url = echo.stdout.readline().split()[1]
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        results = asyncio.run(measure(url, args.calls, args.rounds))
    finally:
        echo.terminate()
        echo.wait()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{args.calls} exchanges per client, {args.rounds} interleaved rounds, load {load}")
    print("| client | p50 ms | p99 ms | client CPU ms/exchange |")
    print("|---|---:|---:|---:|")
    for name, (latencies, cpu) in results.items():
        ordered = sorted(latencies)
        p99 = ordered[int(len(ordered) * 0.99) - 1]
        print(
            f"| {name} | {statistics.median(ordered) * 1000:.2f} | {p99 * 1000:.2f} "
            f"| {cpu / len(latencies) * 1000:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
