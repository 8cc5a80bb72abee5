"""The issue's kill test, reduced: three replica processes share a real redis-server; sessions of both eras
call through them; one replica is killed with SIGKILL while calls are in flight on it.

Every call started after the kill succeeds (a 2025-11-25 session continues on another replica with the
same id, without initializing again); the calls in flight on the killed replica fail with a transport
error, within a deadline, never hang. The test routes like nginx: each session has a home replica,
and goes to the next live one when its home is gone.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.cluster.replicas import SCOPES, USERS, redis_server
from tests.cluster.sessions import MODERN, call_echo, echoed, headers, initialize
from tests.conftest import REPOSITORY
from tests.harness import SECRET, token_for, write_files
from tests.processes import RunningProcess, run_process, write_gateway_config

pytestmark = pytest.mark.anyio

REPLICAS = 3
LEGACY_SESSIONS = 12
MODERN_CALLERS = 6
CALLS_AFTER = 3
DEADLINE = 30.0
"""Seconds any one step may take: a guard against hanging, not a measure of speed."""
STARTUP_DEADLINE = 120.0
"""Three gateway processes starting at once on a shared 2-core machine."""
KEY_ENV = "MCP_AGGREGATOR_TEST_KEY"
REDIS_TIMEOUT = 2.0
"""Seconds one Redis command may take: on a loaded test machine the default 0.25 s can pass, and a replica
then serves from local state (sessions stay where they are) until its listener reconnects."""


@dataclass
class Caller:
    """One client: a 2025-11-25 session (`session_id`) or a 2026-07-28 caller (None), and its home replica."""

    sub: str
    home: int
    session_id: str | None = None

    @property
    def token(self) -> str:
        return token_for(self.sub, groups=USERS)


@dataclass
class Replica:
    url: str
    process: RunningProcess
    alive: bool = True


@asynccontextmanager
async def replica_processes(directory: Path, redis_url: str, echo_url: str) -> AsyncIterator[list[Replica]]:
    """`REPLICAS` `mcp-aggregator serve` processes sharing `redis_url`, started at once; yielded once all are
    READY, connected to echo and to Redis."""
    async with AsyncExitStack() as stack:
        processes = []
        for index in range(REPLICAS):
            folder = directory / f"replica-{index}"
            servers = write_files(folder, {"echo": {"transport": "streamable-http", "url": echo_url}}, SCOPES)
            config = write_gateway_config(
                folder,
                key_env=KEY_ENV,
                cluster={"redis_url": redis_url, "retry_interval": 0.1, "timeout": REDIS_TIMEOUT},
                rate_limit_per_second=0,
            )
            argv = ["-m", "aggregator", "serve", "--servers", str(servers), "--port", "0", "--config", str(config)]
            process = await stack.enter_async_context(
                run_process([sys.executable, *argv], REPOSITORY, env={KEY_ENV: SECRET})
            )
            processes.append(process)
        urls: dict[int, str] = {}

        async def ready(index: int, process: RunningProcess) -> None:
            line = await process.wait_for(re.compile(r"^READY (\S+)"), STARTUP_DEADLINE)
            urls[index] = line.split()[1]
            await process.wait_for(re.compile(r"upstream\.connected upstream=echo "), STARTUP_DEADLINE)
            await process.wait_for("cluster.redis_available", STARTUP_DEADLINE)

        async with anyio.create_task_group() as starting:
            for index, process in enumerate(processes):
                starting.start_soon(ready, index, process)
        yield [Replica(urls[index], process) for index, process in enumerate(processes)]


async def slow_call_in_flight(
    http: httpx2.AsyncClient, url: str, caller: Caller, started: anyio.Event
) -> BaseException | None:
    """A long `echo__slow` call with progress: `started` is set once its first progress event arrived; returns
    the error that ended it (None if it was answered, which the test does not expect)."""
    meta: dict[str, Any] = {"progressToken": f"p-{caller.sub}"}
    params = {"name": "echo__slow", "arguments": {"seconds": 120}, "_meta": meta}
    sent = headers(caller.token, caller.session_id)
    if caller.session_id is None:
        meta |= {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        sent |= {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "echo__slow"}
    body = {"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": params}
    try:
        with anyio.fail_after(DEADLINE):  # never hang: a call cut off must fail within the deadline
            async with http.stream("POST", url, headers=sent, json=body) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if "notifications/progress" in line:
                        started.set()
    except httpx2.TransportError as error:
        return error
    return None


async def test_calls_after_a_replica_is_killed_all_succeed_and_those_in_flight_fail_cleanly(
    echo_url: str, tmp_path: Path
) -> None:
    callers = [Caller(f"legacy-{index}", index % REPLICAS) for index in range(LEGACY_SESSIONS)]
    callers += [Caller(f"modern-{index}", index % REPLICAS) for index in range(MODERN_CALLERS)]
    async with (
        redis_server(tmp_path / "redis") as redis,
        replica_processes(tmp_path, redis.url, echo_url) as replicas,
        httpx2.AsyncClient(trust_env=False, timeout=DEADLINE) as http,
    ):

        def cluster_lines() -> list[str]:
            return [line for replica in replicas[1:] for line in replica.process.lines if "cluster." in line]

        def route(caller: Caller) -> str:
            """Where nginx would send the caller: its home while alive, else the next live replica."""
            for offset in range(REPLICAS):
                replica = replicas[(caller.home + offset) % REPLICAS]
                if replica.alive:
                    return replica.url
            raise AssertionError("no replica alive")

        for caller in callers:
            if caller.sub.startswith("legacy"):
                caller.session_id = await initialize(http, route(caller), caller.token, caller.sub)
            assert echoed(await call_echo(http, route(caller), caller.token, caller.session_id, "before")) == "before"

        doomed = [caller for caller in callers if caller.home == 0]
        cut_off: list[BaseException | None] = []
        async with anyio.create_task_group() as flights:
            started = [anyio.Event() for _ in doomed]

            async def fly(caller: Caller, event: anyio.Event) -> None:
                cut_off.append(await slow_call_in_flight(http, replicas[0].url, caller, event))

            for caller, event in zip(doomed, started, strict=True):
                flights.start_soon(fly, caller, event)
            with anyio.fail_after(DEADLINE):
                for event in started:
                    await event.wait()
            replicas[0].process.process.send_signal(signal.SIGKILL)
            await replicas[0].process.process.wait()
            replicas[0].alive = False

            async def after_the_kill(caller: Caller) -> None:
                for index in range(CALLS_AFTER):
                    response = await call_echo(http, route(caller), caller.token, caller.session_id, f"after {index}")
                    assert response.status_code == 200, (caller, response.text, cluster_lines())
                    assert echoed(response) == f"after {index}"
                    if caller.session_id is not None:
                        assert response.headers.get("mcp-session-id") == caller.session_id, "the same session"

            with anyio.fail_after(DEADLINE):
                async with anyio.create_task_group() as calls:
                    for caller in callers:
                        calls.start_soon(after_the_kill, caller)

        assert len(cut_off) == len(doomed)
        assert all(isinstance(error, httpx2.TransportError) for error in cut_off), cut_off
        adopted = sum(
            len([line for line in replica.process.lines if "cluster.session_adopted" in line])
            for replica in replicas[1:]
        )
        moved = [caller for caller in doomed if caller.session_id is not None]
        assert adopted == len(moved), "each session of the killed replica was adopted once, by one replica"
        for replica in replicas[1:]:
            assert not [line for line in replica.process.lines if "Traceback" in line]
