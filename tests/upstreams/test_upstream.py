"""Upstream sessions under failure: dead upstreams fail fast, come back by themselves, leave no children."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import mcp_types as types
import pytest

from aggregator.errors import UpstreamUnavailableError
from aggregator.registry.models import ServersFile
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.state import Timings, UpstreamState
from tests.conftest import REPOSITORY, http_upstream
from tests.harness import free_port, serve_upstream

pytestmark = pytest.mark.anyio
FAST = Timings(connect_timeout=20, health_interval=0.5, backoff_initial=0.05, backoff_max=0.5)
DEADLINE = 30


def children_running(marker: str) -> set[int]:
    """Pids of this process's children whose command line contains `marker` (zombies included)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        if int(parent) == os.getpid() and marker in cmdline:
            found.add(int(entry.name))
    return found


def is_zombie_or_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def servers(echo_port: int) -> ServersFile:
    return ServersFile.model_validate(
        {
            "servers": {
                "echo": {"transport": "streamable-http", "url": f"http://127.0.0.1:{echo_port}/mcp", "timeout": 5},
                "notes": {
                    "transport": "stdio",
                    "command": sys.executable,
                    "args": ["-m", "examples.servers.notes"],
                    "cwd": str(REPOSITORY),
                },
            }
        }
    )


def healthy(name: str) -> Callable[[UpstreamPool], bool]:
    return lambda pool: pool.get(name).state is UpstreamState.HEALTHY


async def test_a_killed_http_upstream_fails_fast_and_comes_back_by_itself() -> None:
    port = free_port()
    async with http_upstream("echo", port) as (_, echo), UpstreamPool(servers(port), FAST) as pool:
        with anyio.fail_after(DEADLINE):
            await pool.wait_until(UpstreamPool.all_connected)
        echoed = await pool.get("echo").call_tool("echo", {"text": "a"})
        assert isinstance(echoed, types.CallToolResult)
        assert echoed.structured_content == {"result": "a"}

        echo.process.send_signal(signal.SIGKILL)
        await echo.process.wait()
        with anyio.fail_after(5), pytest.raises(UpstreamUnavailableError) as caught:
            await pool.get("echo").call_tool("echo", {"text": "b"})
        assert str(caught.value).startswith("Upstream 'echo' is unavailable: ")
        # The other upstream keeps serving while echo is down.
        listed = await pool.get("notes").call_tool("list_notes", {})
        assert isinstance(listed, types.CallToolResult)
        assert not listed.is_error


async def test_an_upstream_that_returns_is_reconnected() -> None:
    port = free_port()
    async with UpstreamPool(servers(port), FAST) as pool:
        with anyio.fail_after(DEADLINE):
            await pool.wait_until(healthy("notes"))
        assert pool.get("echo").state is UpstreamState.UNHEALTHY
        async with serve_upstream("echo", port=port):
            with anyio.fail_after(DEADLINE):
                await pool.wait_until(healthy("echo"))
            added = await pool.get("echo").call_tool("add", {"a": 1, "b": 2})
            assert isinstance(added, types.CallToolResult)
            assert added.structured_content == {"result": 3}


async def test_a_killed_stdio_upstream_is_reaped_and_restarted() -> None:
    async with UpstreamPool(servers(free_port()), FAST) as pool:
        with anyio.fail_after(DEADLINE):
            await pool.wait_until(healthy("notes"))
        (first,) = children_running("examples.servers.notes")
        os.kill(first, signal.SIGKILL)
        with anyio.fail_after(DEADLINE):
            await pool.wait_until(lambda p: p.get("notes").state is not UpstreamState.HEALTHY)
            await pool.wait_until(healthy("notes"))
        assert not is_zombie_or_alive(first)
        (second,) = children_running("examples.servers.notes")
        assert second != first
        listed = await pool.get("notes").call_tool("list_notes", {})
        assert isinstance(listed, types.CallToolResult)
        assert not listed.is_error
    assert not is_zombie_or_alive(second)
    assert children_running("examples.servers.notes") == set()
