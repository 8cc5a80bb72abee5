"""Shared fixtures: in-process upstreams and gateways, and the real processes for tests about processes."""

from __future__ import annotations

import os
import re
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpcore2
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from tests.harness import STARTUP_DEADLINE as STARTUP_DEADLINE
from tests.harness import LiveGateway, serve_gateway, serve_upstream
from tests.processes import RunningProcess, run_process

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _repository_data() -> dict[str, int]:
    """The repository's data/ (what `make demo` uses) as name -> modification time, empty when there is none."""
    try:
        return {entry.name: entry.stat().st_mtime_ns for entry in (REPOSITORY / "data").iterdir()}
    except FileNotFoundError:
        return {}


@pytest.fixture(autouse=True)
def _leaves_the_repository_data_alone() -> Iterator[None]:
    """No test writes into the repository's data/: the next `make demo` would find its pins and audit log."""
    before = _repository_data()
    yield
    assert _repository_data() == before, "the test wrote into the repository's data/ (give its gateway a data_dir)"


@pytest.fixture(scope="session", autouse=True)
def _one_default_tls_context() -> Iterator[None]:
    """Every HTTP client of the test process shares one default TLS context per trust setting.

    httpx2 builds a fresh context for each client, and reading the system's CA bundle into it costs
    about 25 ms of CPU. The suite makes thousands of clients (each test client, each gateway's client
    of each upstream, each console link), all speaking plain HTTP on loopback: the contexts took a
    third of the CPU of tests/security/test_shared_state.py. Contexts that tests or settings build
    themselves (`verify=<context>`) are untouched; the environment's SSL_CERT_FILE and SSL_CERT_DIR
    still apply, since they are part of the key.
    """
    build = httpcore2.default_ssl_context
    contexts: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}

    def shared(*, _trust_env: bool = True) -> ssl.SSLContext:
        key = (_trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        if key not in contexts:
            contexts[key] = build(_trust_env=_trust_env)
        return contexts[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpcore2, "default_ssl_context", shared)
        yield


@pytest.fixture(scope="session")
def upstream_portal() -> Iterator[BlockingPortal]:
    """An event loop in its own thread for the session's shared upstreams.

    A session fixture served in the test runner's task would enter its task group there between
    module fixtures' own, and pytest tears them down in scope order, not in the reverse order they
    were entered: the session's cancel scope was then exited while a module's was current
    ("Attempted to exit a cancel scope that isn't the current task's cancel scope"). Tests reach
    these upstreams only through their URLs, so they may live on another loop.
    """
    with start_blocking_portal() as portal:
        yield portal


@pytest.fixture(scope="session")
def weather_url(upstream_portal: BlockingPortal) -> Iterator[str]:
    """The demo weather upstream, in-process, shared by every test of the session (it keeps no state)."""
    with upstream_portal.wrap_async_context_manager(serve_upstream("weather")) as url:
        yield url


@pytest.fixture(scope="session")
def echo_url(upstream_portal: BlockingPortal) -> Iterator[str]:
    """The demo echo upstream, in-process, shared by every test of the session (it keeps no state)."""
    with upstream_portal.wrap_async_context_manager(serve_upstream("echo")) as url:
        yield url


@pytest.fixture
def secured_gateway(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[LiveGateway]]:
    """Start an in-process gateway in this test's folder: `async with secured_gateway(servers=..., scopes=...)`.

    Callers authenticate with `token_for` tokens (`LiveGateway.client(sub, groups=..., era=...)`).
    """

    def start(**options: Any) -> AbstractAsyncContextManager[LiveGateway]:
        return serve_gateway(tmp_path / "gateway", **options)

    return start


@asynccontextmanager
async def http_upstream(module: str, port: int = 0) -> AsyncIterator[tuple[str, RunningProcess]]:
    """Run a demo HTTP upstream as a process (`python -m examples.servers.<module>`); yield its /mcp URL
    once it is READY. For tests about that process; others use `serve_upstream`."""
    argv = [sys.executable, "-m", f"examples.servers.{module}", "--host", "127.0.0.1", "--port", str(port)]
    async with run_process(argv, cwd=REPOSITORY) as process:
        line = await process.wait_for(re.compile(r"^READY (\S+)"), STARTUP_DEADLINE)
        yield line.split()[1], process


@asynccontextmanager
async def gateway_process(
    servers_file: Path, *extra: str, env: dict[str, str] | None = None, insecure_dev: bool = True
) -> AsyncIterator[tuple[str, RunningProcess]]:
    """Run `mcp-aggregator serve` on a free port; yield its /mcp URL once it is READY.

    For tests about the process (signals, stdio children, the CLI); others use `serve_gateway`.
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
    # Data beside the servers file, never in the repository's data/ (which `make demo` uses).
    env = {"MCP_AGGREGATOR_DATA_DIR": str(servers_file.parent / "data"), **(env or {})}
    async with run_process(argv, cwd=REPOSITORY, env=env) as process:
        line = await process.wait_for(re.compile(r"^READY (\S+)"), STARTUP_DEADLINE)
        yield line.split()[1], process


async def wait_connected(process: RunningProcess, upstream: str, after: int = 0) -> None:
    """Wait until a gateway process logs that `upstream` connected (counting only log lines after index `after`)."""
    await process.wait_for(re.compile(rf"upstream\.connected upstream={re.escape(upstream)} "), STARTUP_DEADLINE, after)


# pytest-xdist (`--dist loadfile`) hands files to its two workers in collection order, so a slow file
# collected last keeps one worker busy alone at the end of the run. The slowest files (whole-file wall
# time on a quiet 2-core machine, slowest first) are handed out first; the rest keep their order.
SLOWEST_FILES = (
    "tests/conformance/test_conformance.py",
    "tests/cli/test_startup.py",
    "tests/tui/test_live.py",
    "tests/security/test_shared_state.py",
    "tests/tui/test_servers.py",
    "tests/cli/test_search_command.py",
    "tests/upstreams/test_faults.py",
    "tests/fuzz/test_fuzz.py",
    "tests/server/test_lean.py",
    "tests/federation/test_follow.py",
    "tests/cli/test_shutdown.py",
    "tests/search/test_learning.py",
    "tests/tui/test_snapshots.py",
    "tests/cluster/test_replica_killed.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the items of `SLOWEST_FILES` first, slowest file first (a stable sort: nothing else moves)."""
    rank = {name: place for place, name in enumerate(SLOWEST_FILES)}

    def place(item: pytest.Item) -> int:
        return rank.get(item.path.relative_to(REPOSITORY).as_posix(), len(rank))

    items.sort(key=place)
