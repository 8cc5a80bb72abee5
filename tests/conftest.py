"""Shared fixtures: real processes on loopback, started and stopped by the tests, waited on by events."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.harness import LiveGateway, serve_gateway
from tests.processes import RunningProcess, run_process

REPOSITORY = Path(__file__).resolve().parents[1]
STARTUP_DEADLINE = 60.0


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def http_upstream(module: str, port: int = 0) -> AsyncIterator[tuple[str, RunningProcess]]:
    """Run a demo HTTP upstream (`python -m examples.servers.<module>`); yield its /mcp URL once it is READY."""
    argv = [sys.executable, "-m", f"examples.servers.{module}", "--host", "127.0.0.1", "--port", str(port)]
    async with run_process(argv, cwd=REPOSITORY) as process:
        line = await process.wait_for(re.compile(r"^READY (\S+)"), STARTUP_DEADLINE)
        yield line.split()[1], process


@asynccontextmanager
async def gateway_process(
    servers_file: Path, *extra: str, env: dict[str, str] | None = None, insecure_dev: bool = True
) -> AsyncIterator[tuple[str, RunningProcess]]:
    """Run `mcp-aggregator serve` on a free port; yield its /mcp URL once it is READY.

    Without `insecure_dev`, pass `--config` with auth settings in `extra`.
    """
    argv: Sequence[str] = [
        sys.executable,
        "-m",
        "aggregator",
        "serve",
        "--servers",
        str(servers_file),
        "--port",
        "0",
        *(["--insecure-dev"] if insecure_dev else []),
        *extra,
    ]
    async with run_process(argv, cwd=REPOSITORY, env=env) as process:
        line = await process.wait_for(re.compile(r"^READY (\S+)"), STARTUP_DEADLINE)
        yield line.split()[1], process


async def wait_connected(process: RunningProcess, upstream: str, after: int = 0) -> None:
    """Wait until the gateway logs that `upstream` connected (counting only log lines after index `after`)."""
    await process.wait_for(re.compile(rf"upstream\.connected upstream={re.escape(upstream)} "), STARTUP_DEADLINE, after)


@pytest.fixture
def secured_gateway(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[LiveGateway]]:
    """Start an in-process gateway in this test's folder: `async with secured_gateway(servers=..., scopes=...)`.

    Callers authenticate with `token_for` tokens (`LiveGateway.client(sub, groups=..., era=...)`).
    """

    def start(**options: Any) -> AbstractAsyncContextManager[LiveGateway]:
        return serve_gateway(tmp_path / "gateway", **options)

    return start
