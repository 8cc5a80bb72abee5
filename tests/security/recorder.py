"""A loopback TCP listener that records every byte the gateway sends it, and answers HTTP 404.

It is the "URL an attacker controls": tests register it as an upstream and then read what the
gateway sent (request line, headers, body), or check that the gateway never connected at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import SocketStream

_ANSWER = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class Recorder:
    """What one listener received: one bytes object per connection."""

    port: int
    received: list[bytes] = field(default_factory=list)
    connections: int = 0
    _changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def everything(self) -> bytes:
        return b"".join(self.received)

    async def wait_for(self, condition: Callable[[Recorder], bool], deadline: float = 20.0) -> None:
        """Return once `condition(self)` holds; fail after `deadline` seconds."""
        with anyio.fail_after(deadline):
            while not condition(self):
                await self._changed.wait()

    def _record(self, data: bytes) -> None:
        self.received.append(data)
        self._changed.set()
        self._changed = anyio.Event()

    async def _serve(self, stream: SocketStream) -> None:
        self.connections += 1
        data = b""
        async with stream:
            with anyio.move_on_after(5):
                try:
                    while b"\r\n\r\n" not in data:
                        data += await stream.receive()
                    head = data.partition(b"\r\n\r\n")[0]
                    length = next(
                        (
                            int(line.split(b":", 1)[1])
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length:")
                        ),
                        0,
                    )
                    while len(data) < len(head) + 4 + length:
                        data += await stream.receive()
                    await stream.send(_ANSWER)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass  # the gateway dropped the connection mid-request (a server removed meanwhile): keep what came
        self._record(data)


@asynccontextmanager
async def recording_listener() -> AsyncIterator[Recorder]:
    """Listen on a free loopback port until the block ends; yield its `Recorder`."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    recorder = Recorder(port=listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, recorder._serve)
        try:
            yield recorder
        finally:
            group.cancel_scope.cancel()
