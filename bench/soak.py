"""Soak: many client sessions for minutes against a gateway with one healthy and one flapping upstream.

Run from the repository root::

    python bench/soak.py                 # 50 sessions, 2 minutes
    python bench/soak.py --minutes 10 --sessions 100 --json soak.json

It starts, as subprocesses on loopback: the echo upstream (`healthy`), a second echo upstream on a
fixed port that is killed (SIGKILL) every `--up` seconds and restarted `--down` seconds later
(`flapping`), and the gateway in front of both (`--insecure-dev`; concurrency caps lifted, since
every session is the same principal). Then `--sessions` client sessions (half 2025-11-25, half
2026-07-28) call `healthy__echo` and `flapping__echo` in turn until the time is up. A session whose
connection breaks is reopened and counted.

The report: calls served per upstream, errors by kind, p50/p99 latency, and the gateway's RSS after
the warm-up and at the end. Targets: no failed call to the healthy upstream, RSS growth under 10%.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.shared.exceptions import MCPError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import RunningProcess, free_port, run_process

REPOSITORY = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
RSS_GROWTH_TARGET = 0.10
READY = re.compile(r"^READY (\S+)")
KINDS = {-32001: "timeout", -32050: "unavailable", -32051: "invalid answer", -32029: "over a limit"}


@dataclass
class Tally:
    """Outcomes and latencies of the calls to one upstream."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def percentile(self, share: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Soak:
    """Everything one run measured."""

    tallies: dict[str, Tally] = field(default_factory=lambda: {"healthy": Tally(), "flapping": Tally()})
    reconnects: Counter[str] = field(default_factory=Counter)
    rss_kib: list[tuple[float, int]] = field(default_factory=list)
    flaps: int = 0
    seconds: float = 0.0
    log_problems: list[str] = field(default_factory=list)


@asynccontextmanager
async def started(argv: Sequence[str]) -> AsyncIterator[tuple[RunningProcess, str]]:
    """Run `argv`; yield the process (its output collected) and the URL of its READY line; stop it after."""
    async with run_process(argv, cwd=REPOSITORY) as process:
        line = await process.wait_for(READY, START_TIMEOUT)
        yield process, line.split()[1]


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


async def flap(port: int, up: float, down: float, soak: Soak) -> None:
    """Keep the flapping upstream coming and going: up for `up` s, killed, down for `down` s."""
    argv = [sys.executable, "-m", "examples.servers.echo", "--host", "127.0.0.1", "--port", str(port)]
    while True:
        async with started(argv) as (process, _):
            await anyio.sleep(up)
            process.process.send_signal(signal.SIGKILL)
            soak.flaps += 1
        await anyio.sleep(down)


async def session(url: str, mode: str, until: float, soak: Soak) -> None:
    """One client session calling both upstreams in turn; reopened when its connection breaks."""
    while time.monotonic() < until:
        try:
            async with Client(url, mode=mode) as client:
                while time.monotonic() < until:
                    for upstream in ("healthy", "flapping"):
                        await call(client, upstream, soak.tallies[upstream])
        except Exception as error:  # noqa: BLE001 - a broken session is counted and reopened
            soak.reconnects[f"{mode}: {type(error).__name__}"] += 1


async def call(client: Client, upstream: str, tally: Tally) -> None:
    started_at = time.perf_counter()
    try:
        with anyio.fail_after(60):
            result = await client.call_tool(f"{upstream}__echo", {"text": "soak"})
    except MCPError as error:
        tally.errors[f"{error.code} {KINDS.get(error.code, 'error')}"] += 1
        return
    except TimeoutError:
        tally.errors["no answer within 60 s"] += 1
        return
    if result.is_error or result.structured_content != {"result": "soak"}:
        tally.errors["wrong answer"] += 1
        return
    tally.latencies.append(time.perf_counter() - started_at)


async def sample_rss(pid: int, soak: Soak, every: float) -> None:
    began = time.monotonic()
    while True:
        soak.rss_kib.append((round(time.monotonic() - began, 1), rss_kib(pid)))
        await anyio.sleep(every)


async def run(arguments: argparse.Namespace, directory: Path) -> Soak:
    soak = Soak()
    flapping_port = free_port()
    async with AsyncExitStack() as stack:
        _, healthy_url = await stack.enter_async_context(
            started([sys.executable, "-m", "examples.servers.echo", "--host", "127.0.0.1", "--port", "0"])
        )
        servers = {
            "healthy": {"transport": "streamable-http", "url": healthy_url, "timeout": 10},
            "flapping": {"transport": "streamable-http", "url": f"http://127.0.0.1:{flapping_port}/mcp", "timeout": 5},
        }
        settings = {
            "data_dir": str(directory / "data"),
            "backoff_initial": 0.1,
            "backoff_max": 1.0,
            "limits": {"max_calls_per_principal": 10_000, "max_calls_per_upstream": 10_000},
        }
        (directory / "servers.yaml").write_text(json.dumps({"servers": servers}))
        (directory / "gateway.yaml").write_text(json.dumps(settings))
        gateway_argv = [sys.executable, "-m", "aggregator", "serve", "--insecure-dev", "--port", "0"]
        gateway_argv += ["--servers", str(directory / "servers.yaml"), "--config", str(directory / "gateway.yaml")]
        gateway, url = await stack.enter_async_context(started(gateway_argv))
        began = time.monotonic()
        until = began + arguments.minutes * 60
        async with anyio.create_task_group() as background:
            background.start_soon(flap, flapping_port, arguments.up, arguments.down, soak)
            async with anyio.create_task_group() as sessions:
                for index in range(arguments.sessions):
                    sessions.start_soon(session, url, ("legacy", "auto")[index % 2], until, soak)
                await anyio.sleep(arguments.warmup)
                background.start_soon(sample_rss, gateway.pid, soak, 10.0)
            soak.rss_kib.append((round(time.monotonic() - began - arguments.warmup, 1), rss_kib(gateway.pid)))
            background.cancel_scope.cancel()
        soak.seconds = time.monotonic() - began
        problems = ("Traceback", "request.failed", "unexpected_error", "Exception in ASGI application")
        soak.log_problems = [line for line in gateway.lines if any(problem in line for problem in problems)]
        if arguments.gateway_log is not None:
            await anyio.Path(arguments.gateway_log).write_text(gateway.output + "\n")
    return soak


def report(soak: Soak, arguments: argparse.Namespace) -> dict[str, Any]:
    """The run's numbers, and whether the targets were met."""
    upstreams = {}
    for name, tally in soak.tallies.items():
        p50, p99 = tally.percentile(0.50), tally.percentile(0.99)
        upstreams[name] = {
            "served": len(tally.latencies),
            "failed": sum(tally.errors.values()),
            "errors": dict(tally.errors.most_common()),
            "p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
            "p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
        }
    start, end = soak.rss_kib[0][1], soak.rss_kib[-1][1]
    growth = (end - start) / start if start else 0.0
    served = sum(len(tally.latencies) for tally in soak.tallies.values())
    return {
        "command": f"python bench/soak.py --minutes {arguments.minutes:g} --sessions {arguments.sessions}",
        "seconds": round(soak.seconds, 1),
        "sessions": arguments.sessions,
        "calls_served": served,
        "calls_per_second": round(served / soak.seconds, 1),
        "upstreams": upstreams,
        "session_reconnects": dict(soak.reconnects),
        "flaps": soak.flaps,
        "gateway_rss_kib": {"after_warmup": start, "end": end, "growth_percent": round(growth * 100, 1)},
        "gateway_rss_samples": soak.rss_kib,
        "gateway_log_problems": soak.log_problems[:20],
        "targets_met": {
            "no_failed_healthy_calls": upstreams["healthy"]["failed"] == 0,
            "rss_growth_under_10_percent": growth < RSS_GROWTH_TARGET,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--up", type=float, default=4.0, help="seconds the flapping upstream stays up")
    parser.add_argument("--down", type=float, default=1.0, help="seconds it stays down")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before the first RSS sample")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--gateway-log", type=Path, help="write the gateway's log here")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mcp-soak-") as directory:
        soak = anyio.run(run, arguments, Path(directory))
    result = report(soak, arguments)
    text = json.dumps(result, indent=2)
    print(text)
    if arguments.json is not None:
        arguments.json.write_text(text + "\n")
    return 0 if all(result["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
