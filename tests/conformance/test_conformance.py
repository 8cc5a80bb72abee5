"""The official MCP conformance suite, run against the conformance upstream and the gateway fronting it.

The upstream (tests/servers/conformance_server.py) implements every fixture the suite's server
scenarios call, and serves the tasks extension itself. Run directly it must fail nothing but
`UPSTREAM_GAPS` (none), which proves the fixture and this harness. The gateway serves it under an
empty prefix, so the suite reaches each fixture by its exact name, and runs each task as the
upstream's own (aggregator/upstreams/tasks.py); there a check may fail only if its revision's
baseline (baseline-<revision>.txt beside this file) lists it, and a listed check that passes fails
the test until its entry is deleted: the baselines only shrink. A check that passes directly and is
only INFO through the gateway (it answered so that the suite could not judge) fails like any other
unless listed.
`-k upstream` or `-k gateway` runs one target.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio.to_thread
import pytest

from tests.conformance import harness
from tests.harness import connected, serve_conformance_upstream, serve_gateway
from tests.tasks.fixtures import REQUIRED_TASK_TOOLS

BASELINES = Path(__file__).parent

UPSTREAM_GAPS: dict[str, dict[str, str]] = {"2025-11-25": {}, "2026-07-28": {}}
"""Checks the fixture itself fails, by revision, with the reason: none, the tasks extension (SEP-2663) included."""

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.conformance,
    # The fixture serves the deprecated logging capability on purpose (the suite still checks it).
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
    pytest.mark.skipif(
        not harness.suite_installed(),
        reason="the MCP conformance suite is not installed: run `npm ci --prefix tools` first",
    ),
]


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[str]:
    async with serve_conformance_upstream() as url:
        yield url


@pytest.fixture(scope="module")
async def gateway(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    # An empty prefix: the suite calls every fixture by its upstream name. The tasks scenarios expect
    # `failing_job` and `test_tool_with_task` to be registered with taskSupport "required", as the upstream
    # serves them: the operator says so in `tasks.required`, since the 2026-07-28 wire cannot carry it.
    servers = {"conf": {"transport": "streamable-http", "url": upstream, "prefix": ""}}
    # `stream_hold: 0`: a 2025-11-25 caller's call is answered on the stream it resumes with Last-Event-ID, as
    # `test_reconnection` asks of a server (the stateless 2026-07-28 upstream has no stream of its own to close).
    tasks = {"required": {"conf": list(REQUIRED_TASK_TOOLS)}, "stream_hold": 0}
    async with serve_gateway(tmp_path_factory.mktemp("gateway"), servers=servers, secured=False, tasks=tasks) as live:
        await live.wait_until(connected("conf"))
        yield live.url


_DIRECT: dict[tuple[str, str], dict[str, harness.Outcome]] = {}
"""Outcomes against the upstream by (url, revision), from this process's upstream runs."""


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    upstream: str

    def expected_failures(self, revision: str) -> dict[str, str]:
        if self.name == "upstream":
            return UPSTREAM_GAPS[revision]
        return harness.read_baseline(BASELINES / f"baseline-{revision}.txt")


@pytest.fixture(scope="module", params=["upstream", "gateway"])
def target(request: pytest.FixtureRequest) -> Target:
    """The server under test; the gateway is only started when a test needs it."""
    return Target(request.param, request.getfixturevalue(request.param), request.getfixturevalue("upstream"))


async def run_suite(url: str, revision: str, results: Path) -> dict[str, harness.Outcome]:
    return await anyio.to_thread.run_sync(partial(harness.run_suite, url, revision, results))


@pytest.mark.timeout(2 * harness.SUITE_TIMEOUT_SECONDS + 30)
@pytest.mark.parametrize("revision", harness.REVISIONS)
async def test_conformance_suite_fails_only_expected_checks(target: Target, revision: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    outcomes = await run_suite(target.url, revision, results)
    if target.name == "upstream":
        _DIRECT[target.url, revision] = outcomes
    direct = _DIRECT.get((target.upstream, revision))
    if direct is None:  # the upstream ran in another worker, or not at all (-k gateway)
        direct = await run_suite(target.upstream, revision, tmp_path / "direct")

    judgement = harness.judge(outcomes, target.expected_failures(revision), direct)

    report = f"{target.name} {target.url} at {revision}: {harness.summarise(outcomes)} (results in {results})"
    assert not judgement.unexpected, f"{report}. Failures outside the baseline:\n" + "\n".join(
        f"  {key}  # {message}" for key, message in judgement.unexpected.items()
    )
    assert not judgement.stale, f"{report}. These baseline entries now pass; delete them:\n" + "\n".join(
        f"  {entry}" for entry in judgement.stale
    )
