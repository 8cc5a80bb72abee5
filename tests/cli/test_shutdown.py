"""SIGTERM to a busy gateway: calls in flight finish, new connections are refused, the process exits 0
and leaves no stdio upstream behind."""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.conftest import gateway_process, wait_connected
from tests.harness import write_files
from tests.processes import RunningProcess, write_gateway_config

pytestmark = pytest.mark.anyio
GRACE = 10  # seconds: `shutdown_grace`, how long SIGTERM lets calls in flight finish (its default)
SHORT_GRACE = 1  # where the call is to outlast the grace: the test need not wait out the default
SLOW = 2.0
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": MODERN}


def children_of(pid: int) -> set[int]:
    """Pids whose parent is `pid`, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if re.search(rf"^PPid:\s+{pid}$", status, re.MULTILINE):
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting to be reaped does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return not re.search(r"^State:\s+Z", status, re.MULTILINE)


@asynccontextmanager
async def stdio_gateway(directory: Path, grace: int) -> AsyncIterator[tuple[str, RunningProcess, set[int]]]:
    """A gateway fronting two stdio upstreams, `grace` its `shutdown_grace`; yields its URL, its process and its
    children's pids."""
    servers = {
        "faulty": {
            "transport": "stdio",
            "command": sys.executable,
            "args": ["tests/servers/faulty.py", "--stdio"],
            "timeout": 60,
        },
        "notes": {"transport": "stdio", "command": sys.executable, "args": ["-m", "examples.servers.notes"]},
    }
    config = write_gateway_config(directory, shutdown_grace=grace)
    async with gateway_process(write_files(directory, servers, None), "--config", str(config)) as (url, gateway):
        await wait_connected(gateway, "faulty")
        await wait_connected(gateway, "notes")
        upstreams = children_of(gateway.pid)
        assert len(upstreams) == 2
        yield url, gateway, upstreams


async def post(url: str, tool: str, arguments: dict[str, Any], answers: list[str]) -> None:
    """One plain 2026-07-28 `tools/call` (a client session would make requests of its own when it closes)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": META},
    }
    headers = {**HEADERS, "mcp-method": "tools/call", "mcp-name": tool}
    async with httpx2.AsyncClient(trust_env=False, timeout=60) as client:
        try:
            response = await client.post(url, json=body, headers=headers)
        except httpx2.TransportError as error:
            answers.append(repr(error))
            return
    answers.append(response.text)


async def test_sigterm_lets_the_call_in_flight_finish_refuses_new_ones_and_reaps_children(tmp_path: Path) -> None:
    answers: list[str] = []
    async with stdio_gateway(tmp_path, GRACE) as (url, gateway, upstreams):
        with anyio.fail_after(SLOW + GRACE + 5):
            async with anyio.create_task_group() as calls:
                calls.start_soon(post, url, "faulty__slow", {"seconds": SLOW}, answers)
                await gateway.wait_for(re.compile(r'upstream=faulty line="STARTED slow"'), 30)  # its stderr, logged
                gateway.process.send_signal(signal.SIGTERM)
                await refused(url.removesuffix("/mcp") + "/healthz")
                assert not answers  # still in flight while new connections are refused
            status = await gateway.process.wait()
    assert status == 0
    (answer,) = answers
    assert json.loads(answer.removeprefix("event: message").strip().removeprefix("data:"))["result"]["content"] == [
        {"type": "text", "text": f"Waited {SLOW:g} s."}
    ]
    assert [pid for pid in upstreams if alive(pid)] == []
    assert "Traceback" not in gateway.output


async def test_a_call_that_outlasts_the_graceful_deadline_does_not_keep_the_gateway_alive(tmp_path: Path) -> None:
    answers: list[str] = []
    async with stdio_gateway(tmp_path, SHORT_GRACE) as (url, gateway, upstreams):
        with anyio.fail_after(SHORT_GRACE + 10):
            async with anyio.create_task_group() as calls:
                calls.start_soon(post, url, "faulty__hang", {}, answers)
                await gateway.wait_for(re.compile(r'upstream=faulty line="STARTED hang"'), 30)
                gateway.process.send_signal(signal.SIGTERM)
                status = await gateway.process.wait()
    assert status == 0
    assert len(answers) == 1  # the caller learns its call ended (its connection closes), it is not left hanging
    assert [pid for pid in upstreams if alive(pid)] == []


async def refused(url: str) -> None:
    """Return once a new connection to `url` is refused (the listener closes right after SIGTERM)."""
    while True:
        async with httpx2.AsyncClient(trust_env=False) as fresh:
            try:
                await fresh.get(url)
            except httpx2.ConnectError:
                return
            except httpx2.RemoteProtocolError:
                continue  # accepted as the listener closed, then closed unanswered: ask again until refused
