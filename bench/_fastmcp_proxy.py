"""The comparison peer for `bench/latency.py`: fastmcp's default `create_proxy(url)` over streamable HTTP.

Run: `python bench/_fastmcp_proxy.py UPSTREAM_URL --port 0`

Binds the socket itself so that `--port 0` works, then prints one line `READY http://127.0.0.1:N/mcp`
on stdout (connections made before uvicorn starts accepting wait in the listen backlog).
"""

from __future__ import annotations

import argparse
import socket

import anyio
from fastmcp.server import create_proxy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", help="streamable-HTTP URL of the server to proxy")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    arguments = parser.parse_args()

    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it Nagle holds a response body back until the client's delayed ACK (~40 ms).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((arguments.host, arguments.port))
    listener.listen(512)
    port = listener.getsockname()[1]

    proxy = create_proxy(arguments.upstream, name="fastmcp-proxy")
    print(f"READY http://{arguments.host}:{port}/mcp", flush=True)
    anyio.run(
        lambda: proxy.run_http_async(
            show_banner=False,
            host=arguments.host,
            port=port,
            log_level="warning",
            uvicorn_config={"access_log": False},
            sockets=[listener],
        )
    )


if __name__ == "__main__":
    main()
