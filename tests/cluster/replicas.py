"""A real redis-server on a free loopback port, and in-process gateway replicas that share it.

async with redis_server(tmp_path / "redis") as redis, replicas(tmp_path, redis.url, echo_url, 3) as gateways:
    ...
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from redis.asyncio import Redis

from aggregator.cluster import Cluster
from aggregator.server.edge import RATE_LIMITED
from tests.harness import LiveGateway, connected, serve_gateway
from tests.processes import RunningProcess, free_port, run_process

STARTUP_DEADLINE = 30.0
SCOPES = """
group_mappings:
  users: [echo-users]
  admins: [mcp-registry-admin, echo-users]
UI-Scopes:
  mcp-registry-admin:
    list_service: [all]
echo-users:
- server: echo
  methods: [tools/list, tools/call]
  tools: ["*"]
"""
USERS = ("users",)
ADMINS = ("admins",)
REFILL = 0.001
"""Tokens per second: so slow that a test's budget is its burst, however long the test takes."""


@dataclass(slots=True)
class RedisServer:
    """A redis-server process of the test's own: loopback, a free port, a temp dir, nothing saved."""

    port: int
    directory: Path
    password: str = ""
    process: RunningProcess | None = None

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        """A client of this server for the test's own look at keys (decoded strings)."""
        return Redis.from_url(self.url, decode_responses=True)

    async def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed, no client is told."""
        assert self.process is not None
        self.process.process.kill()
        await self.process.process.wait()


@asynccontextmanager
async def running(server: RedisServer) -> AsyncIterator[RedisServer]:
    """Run `server` (again, after a kill: same port, empty) until the block ends."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make setup)")
    server.directory.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(server.port), "--bind", "127.0.0.1", "--dir", str(server.directory)]
    argv += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]
    if server.password:
        argv += ["--requirepass", server.password]
    async with run_process(argv, server.directory) as process:
        server.process = process
        await process.wait_for("Ready to accept connections", STARTUP_DEADLINE)
        yield server


@asynccontextmanager
async def redis_server(directory: Path) -> AsyncIterator[RedisServer]:
    """A fresh redis-server for the block."""
    async with running(RedisServer(free_port(), directory)) as server:
        yield server


@asynccontextmanager
async def replicas(
    directory: Path,
    redis_url: str,
    echo_url: str,
    count: int,
    burst: int = 9,
    own: Sequence[Mapping[str, Any]] = (),
    wait_for_redis: bool = True,
    scopes: str = SCOPES,
    **settings: Any,
) -> AsyncIterator[list[LiveGateway]]:
    """`count` gateways sharing `redis_url`, each with its own folder (its own data_dir and revocation file),
    every one connected to echo and to Redis; callers get `burst` calls, refilled at `REFILL` per second.
    `own[i]` holds settings of replica i alone; `wait_for_redis` False: yield without waiting for Redis;
    `scopes`: the scopes.yml every replica starts with."""
    options: dict[str, Any] = {"rate_limit_per_second": REFILL, "rate_limit_burst": burst, **settings}
    options.setdefault("cluster", {"redis_url": redis_url, "retry_interval": 0.1})
    async with AsyncExitStack() as stack:
        gateways = []
        for index in range(count):
            live = await stack.enter_async_context(
                serve_gateway(
                    directory / f"replica-{index}",
                    servers={"echo": {"transport": "streamable-http", "url": echo_url}},
                    scopes=scopes,
                    **{**options, **(own[index] if index < len(own) else {})},
                )
            )
            await live.wait_until(connected("echo"))
            gateways.append(live)
        if wait_for_redis:
            await joined(gateways, STARTUP_DEADLINE)
        yield gateways


async def joined(gateways: Sequence[LiveGateway], deadline: float) -> None:
    """Wait until every gateway in `gateways` reaches Redis (fails after `deadline` seconds)."""
    with anyio.fail_after(deadline):
        for live in gateways:
            await cluster_of(live).health.wait(available=True)


def cluster_of(live: LiveGateway) -> Cluster:
    cluster = live.gateway.cluster
    assert cluster is not None, "the gateway was built without cluster.redis_url"
    return cluster


async def served(client: Client, text: str = "hello") -> bool:
    """Whether one echo call was served (True) or refused for the rate limit (False); any other error raises."""
    try:
        result = await client.call_tool("echo__echo", {"text": text})
    except MCPError as error:
        if error.code != RATE_LIMITED:
            raise
        return False
    assert not result.is_error, result
    return True


async def calls_served(clients: Sequence[Client], calls: int) -> int:
    """Make `calls` calls, round robin over `clients` (one per replica); how many were served."""
    return sum([await served(clients[index % len(clients)]) for index in range(calls)])
