"""Upstream faults through a real gateway: each caller gets an error naming the culprit, the health
report tells the truth, the faulty upstream recovers without a gateway restart, and a healthy upstream
serves every call made meanwhile."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError

from aggregator.server.edge import RATE_LIMITED, UPSTREAM_PROTOCOL_ERROR, UPSTREAM_UNAVAILABLE
from tests.conftest import REPOSITORY, STARTUP_DEADLINE
from tests.harness import LiveGateway, connected, free_port, serve_gateway, serve_upstream, text_of
from tests.processes import RunningProcess, run_process

pytestmark = pytest.mark.anyio
TIMEOUT = 3  # the faulty upstream's timeout, in seconds
CIRCUIT_FAILURES = 3
CIRCUIT_COOLDOWN = 3
MAX_RESULT_BYTES = 1024 * 1024
MAX_CALLS_PER_UPSTREAM = 3
DEADLINE = 20
FAULTY_NAMES = ("faulty", "patient")
PACE = 0.1  # seconds each call of the healthy background traffic takes upstream
LIMITS = {
    "max_result_bytes": MAX_RESULT_BYTES,
    "circuit_failures": CIRCUIT_FAILURES,
    "circuit_cooldown": CIRCUIT_COOLDOWN,
    "max_calls_per_upstream": MAX_CALLS_PER_UPSTREAM,
}
GATEWAY: dict[str, Any] = {
    "secured": False,
    "wait_for_upstreams": False,
    "backoff_initial": 0.05,
    "backoff_max": 0.5,
    "health_interval": 0.5,
    "rate_limit_per_second": 0,
    "limits": LIMITS,
}
"""The gateway: every caller unrestricted, quick reconnection and health probes, no per-caller rate limit."""


class Faulty:
    """The faulty upstream on a fixed port, run by a supervisor task that starts it again on request."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: RunningProcess | None = None
        self._up = anyio.Event()
        self._restart = anyio.Event()

    async def supervise(self) -> None:
        argv = [sys.executable, "tests/servers/faulty.py", "--port", str(self.port)]
        while True:
            async with run_process(argv, cwd=REPOSITORY) as process:
                await process.wait_for(re.compile(r"^READY "), STARTUP_DEADLINE)
                self.process = process
                self._up.set()
                await process.process.wait()
            self._up = anyio.Event()
            await self._restart.wait()
            self._restart = anyio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def running(self) -> RunningProcess:
        """The live process (after a crash: once restarted)."""
        with anyio.fail_after(STARTUP_DEADLINE):
            await self._up.wait()
        assert self.process is not None
        return self.process

    async def restart(self) -> RunningProcess:
        """Start the upstream again after it exited; return the new process once it listens."""
        self._restart.set()
        return await self.running()


@dataclass
class Stack:
    live: LiveGateway
    faulty: Faulty

    @property
    def url(self) -> str:
        return self.live.url

    def log_mark(self) -> int:
        return self.live.log.mark()


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    faulty = Faulty(free_port())
    async with serve_upstream("echo") as echo_url, anyio.create_task_group() as supervisor:
        supervisor.start_soon(faulty.supervise)
        servers = {
            "echo": {"transport": "streamable-http", "url": echo_url, "timeout": 10},
            "faulty": {"transport": "streamable-http", "url": faulty.url, "timeout": TIMEOUT},
            # The same server under a patient timeout, for faults that take work rather than time.
            "patient": {"transport": "streamable-http", "url": faulty.url, "timeout": 60},
        }
        async with serve_gateway(tmp_path_factory.mktemp("faults"), servers=servers, **GATEWAY) as live:
            await live.wait_until(connected("echo"))
            yield Stack(live, faulty)
        supervisor.cancel_scope.cancel()


@pytest.fixture
async def faulty(stack: Stack) -> RunningProcess:
    """The faulty upstream's process, once the gateway serves its calls."""
    process = await stack.faulty.running()
    await serving(stack)
    return process


async def serving(stack: Stack) -> None:
    """Wait until calls through both names of the faulty upstream succeed (at once, or once reconnected)."""
    for name in FAULTY_NAMES:
        mark = stack.log_mark()
        try:
            await call(stack.url, f"{name}__echo", {"text": "ping"})
        except MCPError:
            await stack.live.log.wait_for(re.compile(rf"upstream\.connected upstream={name} "), STARTUP_DEADLINE, mark)
            await call(stack.url, f"{name}__echo", {"text": "ping"})


async def outcome(
    url: str, tool: str, arguments: dict[str, Any], mode: str = "auto"
) -> types.CallToolResult | MCPError:
    """What a fresh client (`mode`: its era) gets for one call: the result, or the JSON-RPC error (bounded in time)."""
    async with Client(url, mode=mode) as client:
        try:
            with anyio.fail_after(TIMEOUT * 3):
                return await client.call_tool(tool, arguments)
        except MCPError as error:
            return error


async def call(url: str, tool: str, arguments: dict[str, Any]) -> str:
    """The text of a call that must succeed; an `MCPError` otherwise."""
    result = await outcome(url, tool, arguments)
    if isinstance(result, MCPError):
        raise result
    assert not result.is_error, result.content
    return text_of(result)


async def refused(url: str, tool: str, arguments: dict[str, Any], mode: str = "auto") -> MCPError:
    """The error the gateway answers `tool` with."""
    result = await outcome(url, tool, arguments, mode)
    assert isinstance(result, MCPError), result
    return result


async def readiness(stack: Stack) -> tuple[int, dict[str, Any]]:
    async with stack.live.http() as http:
        response = await http.get("/readyz")
    upstreams: dict[str, Any] = response.json()["upstreams"]
    return response.status_code, upstreams


@dataclass
class Traffic:
    served: int = 0
    failures: list[str] = field(default_factory=list)
    progressed: anyio.Event = field(default_factory=anyio.Event)


@asynccontextmanager
async def healthy_traffic(stack: Stack, at_least: int = 5) -> AsyncIterator[Traffic]:
    """Call the healthy upstream in a loop for the duration of the block; every call must succeed."""
    traffic = Traffic()

    async def loop() -> None:
        async with Client(stack.url) as client:
            while True:
                try:
                    # The upstream paces the loop: each call takes PACE seconds there.
                    result = await client.call_tool("echo__slow", {"seconds": PACE})
                    assert result.structured_content == {"result": f"Waited {PACE:g} s."}
                    traffic.served += 1
                except (MCPError, AssertionError) as error:
                    traffic.failures.append(repr(error))
                if traffic.served >= at_least:
                    traffic.progressed.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(loop)
        yield traffic
        with anyio.fail_after(DEADLINE):
            await traffic.progressed.wait()
        tasks.cancel_scope.cancel()
    assert traffic.failures == []
    assert traffic.served >= at_least


async def test_a_slow_call_answers_within_the_timeout_and_times_out_beyond_it(
    stack: Stack, faulty: RunningProcess
) -> None:
    async with healthy_traffic(stack):
        assert await call(stack.url, "faulty__slow", {"seconds": TIMEOUT / 4}) == f"Waited {TIMEOUT / 4:g} s."
        error = await refused(stack.url, "faulty__slow", {"seconds": 60})
    assert error.code == types.REQUEST_TIMEOUT
    assert error.message == f"Upstream 'faulty' did not answer tools/call 'slow' within {TIMEOUT} s."
    status, upstreams = await readiness(stack)
    assert (status, upstreams["faulty"]["state"]) == (200, "healthy")
    assert await call(stack.url, "faulty__echo", {"text": "after"}) == "after"


async def test_a_hung_call_times_out_and_the_upstream_keeps_serving(stack: Stack, faulty: RunningProcess) -> None:
    async with healthy_traffic(stack):
        error = await refused(stack.url, "faulty__hang", {})
    assert error.code == types.REQUEST_TIMEOUT
    assert error.message == f"Upstream 'faulty' did not answer tools/call 'hang' within {TIMEOUT} s."
    assert error.error.data == {"upstream": "faulty"}
    assert (await readiness(stack))[1]["faulty"]["state"] == "healthy"
    assert await call(stack.url, "faulty__echo", {"text": "after"}) == "after"


async def test_a_crashed_upstream_is_reported_and_comes_back_when_restarted(
    stack: Stack, faulty: RunningProcess
) -> None:
    async with healthy_traffic(stack):
        error = await refused(stack.url, "faulty__crash", {})
        assert error.code == UPSTREAM_UNAVAILABLE
        assert error.message.startswith("Upstream 'faulty' is unavailable: ")
        assert await faulty.process.wait() == 3
        status, upstreams = await readiness(stack)
        # Ready is about the required upstreams only: one that is not may be down.
        assert (status, upstreams["faulty"]["state"]) == (200, "unhealthy")
        assert upstreams["faulty"]["error"]
        later = await refused(stack.url, "faulty__echo", {"text": "down"})
        assert later.code == UPSTREAM_UNAVAILABLE
        assert later.message.startswith("Upstream 'faulty' is unavailable: ")
        await stack.faulty.restart()  # on the same port; the gateway keeps running
        await serving(stack)
        assert await call(stack.url, "faulty__echo", {"text": "back"}) == "back"
        status, upstreams = await readiness(stack)
        assert (status, upstreams["faulty"]) == (200, {**upstreams["faulty"], "state": "healthy", "error": None})


@pytest.mark.parametrize("fault", ["garbage_json", "garbage_shape"])
async def test_garbage_on_the_wire_is_an_invalid_answer(stack: Stack, faulty: RunningProcess, fault: str) -> None:
    async with healthy_traffic(stack):
        error = await refused(stack.url, f"faulty__{fault}", {})
    assert error.code == UPSTREAM_PROTOCOL_ERROR
    assert error.message == f"Upstream 'faulty' sent an invalid answer to tools/call '{fault}'."
    assert (await readiness(stack))[1]["faulty"]["state"] == "healthy"
    assert await call(stack.url, "faulty__echo", {"text": "after"}) == "after"


async def test_a_response_stream_closed_early_fails_that_call_only(stack: Stack, faulty: RunningProcess) -> None:
    mark = stack.log_mark()
    async with healthy_traffic(stack), anyio.create_task_group() as tasks:
        answers: list[str] = []

        async def slow_call() -> None:
            answers.append(await call(stack.url, "faulty__slow", {"seconds": TIMEOUT / 2}))

        tasks.start_soon(slow_call)
        await faulty.wait_for(re.compile(r"^STARTED slow"), DEADLINE)
        error = await refused(stack.url, "faulty__close_early", {})
    assert error.code == UPSTREAM_PROTOCOL_ERROR
    assert error.message == (
        "Upstream 'faulty' sent a response stream that ended before the answer to tools/call 'close_early'."
    )
    # The shared session survived: the call in flight on the same upstream got its answer.
    assert answers == [f"Waited {TIMEOUT / 2:g} s."]
    assert await call(stack.url, "faulty__echo", {"text": "after"}) == "after"
    assert not [line for line in stack.live.log.lines[mark:] if "upstream.unhealthy upstream=faulty" in line]


async def test_a_notification_flood_neither_blocks_the_upstream_nor_reorders_progress(
    stack: Stack, faulty: RunningProcess
) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with healthy_traffic(stack), Client(stack.url) as client, anyio.create_task_group() as tasks:
        flooded: list[types.CallToolResult] = []

        async def flood(count: int) -> None:
            flooded.append(await client.call_tool("patient__flood", {"count": count}))

        mark = len(faulty.lines)
        tasks.start_soon(flood, 3000)  # 3,000 log notifications
        await faulty.wait_for(re.compile(r"^STARTED flood"), DEADLINE, mark)
        assert await call(stack.url, "faulty__echo", {"text": "meanwhile"}) == "meanwhile"
        progressed = await client.call_tool("patient__flood", {"count": 1000}, progress_callback=on_progress)
    assert [block.text for r in flooded for block in r.content if isinstance(block, types.TextContent)] == [
        "Sent 3000 notifications of each kind."
    ]
    assert not progressed.is_error
    assert seen == [float(index) for index in range(1, 1001)]


@pytest.mark.parametrize("notify", [False, True], ids=["json", "sse"])
async def test_an_oversized_answer_is_refused(stack: Stack, faulty: RunningProcess, notify: bool) -> None:
    # A 2025-11-25 session takes the upstream's logs, so with `notify` the upstream streams its answer as SSE (a
    # 2026-07-28 caller asks for none, and is answered in one JSON body either way).
    async with healthy_traffic(stack):
        arguments = {"megabytes": 10, "notify": notify}
        error = await refused(stack.url, "faulty__big", arguments, "legacy" if notify else "auto")
    assert error.code == UPSTREAM_PROTOCOL_ERROR
    assert error.message == (
        "Upstream 'faulty' sent an answer over the limit of 1048576 bytes to tools/call 'big'."
        if notify
        else "Upstream 'faulty' sent an answer of about 10485760 bytes (the limit is 1048576) to tools/call 'big'."
    )
    assert (await readiness(stack))[1]["faulty"]["state"] == "healthy"
    assert await call(stack.url, "faulty__echo", {"text": "after"}) == "after"


async def test_concurrent_calls_to_one_upstream_are_bounded(stack: Stack, faulty: RunningProcess) -> None:
    answers: list[str] = []

    async def slow_call() -> None:
        answers.append(await call(stack.url, "faulty__slow", {"seconds": TIMEOUT / 2}))

    async with healthy_traffic(stack), anyio.create_task_group() as tasks:
        mark = len(faulty.lines)
        for _ in range(MAX_CALLS_PER_UPSTREAM):
            tasks.start_soon(slow_call)
        for _ in range(MAX_CALLS_PER_UPSTREAM):
            line = await faulty.wait_for(re.compile(r"^STARTED slow"), DEADLINE, mark)
            mark = faulty.lines.index(line, mark) + 1
        error = await refused(stack.url, "faulty__echo", {"text": "one too many"})
    assert error.code == RATE_LIMITED
    assert error.message == f"Too many concurrent calls to upstream 'faulty' (limit {MAX_CALLS_PER_UPSTREAM})."
    assert answers == [f"Waited {TIMEOUT / 2:g} s."] * MAX_CALLS_PER_UPSTREAM


async def last_probe(client: Client, upstream: str) -> float:
    """When the gateway last listed `upstream` (its health probe), from the admin `healthcheck` tool."""
    result = await client.call_tool("healthcheck", {})
    assert result.structured_content is not None
    (service,) = [s for s in result.structured_content["services"] if s["name"] == upstream]
    last_check: float = service["last_check"]
    return last_check


async def until(stack: Stack, condition: Callable[[], Awaitable[bool]]) -> None:
    """Re-check `condition` (async, no arguments) as the gateway logs each healthy call, until it holds."""
    with anyio.fail_after(DEADLINE):
        while not await condition():
            healthy_call = re.compile(r"target=echo__slow outcome=ok")
            await stack.live.log.wait_for(healthy_call, DEADLINE, stack.log_mark())


async def test_the_circuit_opens_after_consecutive_failures_and_closes_after_the_cooldown(
    stack: Stack, faulty: RunningProcess
) -> None:
    async with healthy_traffic(stack), Client(stack.url + "/admin") as client:  # /mcp/admin: healthcheck
        async with anyio.create_task_group() as tasks:
            for _ in range(CIRCUIT_FAILURES):
                tasks.start_soon(refused, stack.url, "faulty__hang", {})
        opened = await last_probe(client, "faulty")
        error = await refused(stack.url, "faulty__echo", {"text": "fast"})
        assert error.code == UPSTREAM_UNAVAILABLE
        assert re.fullmatch(
            f"Upstream 'faulty' is unavailable: circuit open after {CIRCUIT_FAILURES} consecutive failures; "
            f"retrying in [0-{CIRCUIT_COOLDOWN}] s",
            error.message,
        ), error.message

        async def probed_since() -> bool:
            return await last_probe(client, "faulty") > opened

        # A health probe that succeeds while the circuit is open must not report the upstream healthy.
        await until(stack, probed_since)
        assert (await readiness(stack))[1]["faulty"]["state"] == "degraded"
        assert "circuit open" in (await refused(stack.url, "faulty__echo", {"text": "still open"})).message

        async def answers() -> bool:
            result = await outcome(stack.url, "faulty__echo", {"text": "closed"})
            assert not isinstance(result, MCPError) or "circuit open" in result.message
            return not isinstance(result, MCPError)

        async def healthy() -> bool:
            return bool((await readiness(stack))[1]["faulty"]["state"] == "healthy")

        await until(stack, answers)
        await until(stack, healthy)


async def test_no_fault_reached_the_gateway_as_an_internal_error(stack: Stack) -> None:
    assert not [line for line in stack.live.log.lines if "request.failed" in line or "unexpected_error" in line]
