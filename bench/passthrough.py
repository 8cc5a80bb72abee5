"""What nginx passthrough costs: the same echo call direct, through nginx, and through the aggregated endpoint.

Run from the repository root (needs nginx: `make setup` installs it)::

    python bench/passthrough.py            # 500 timed calls per (path, era), about a minute on 2 cores
    python bench/passthrough.py --calls 100

One run starts, on loopback ports: the echo upstream (`examples.servers.echo`), the gateway with
token auth (`python -m aggregator serve`), and two nginx instances rendered by `aggregator.nginx` in
front of both (`nginx -p <temp prefix>`): one with the decision cache off (`auth_cache_ttl: 0`, every
request asks the gateway) and one with it on (the default). One `mcp.Client` per (path, era), with
a bearer token allowed to call echo, then makes sequential calls:

* direct                          client -> echo /mcp
* passthrough, no cache           client -> nginx /echo/mcp -> (auth_request -> gateway /auth/validate) -> echo
* passthrough, cached             the same through the caching nginx: a repeated call is a cache hit
* passthrough, cached, new args   the caching nginx, each call with new arguments: a miss every time
                                  (the body is part of the key; see aggregator/nginx/cache.py)
* aggregated                      client -> gateway /mcp -> shared upstream session -> echo
* aggregated via nginx            client -> nginx /mcp -> gateway /mcp -> echo

Rounds interleave the paths so machine noise lands on all of them alike; the table gives p50,
p99, sequential calls/s and p50 as a multiple of direct's in the same era. Wall-clock figures move
with the machine's load. The run ends with the target as a checklist (exit status 1 if missed).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from aggregator.config.settings import Settings, load_settings  # noqa: E402
from aggregator.nginx import NginxControl, NginxPaths, apply  # noqa: E402
from aggregator.registry.models import load_servers  # noqa: E402
from bench._checks import print_checks  # noqa: E402
from tests.processes import free_port, write_gateway_config  # noqa: E402

SECRET = "b" * 48
SCOPES = "bench/echo:\n- server: echo\n  methods: [initialize, tools/list, tools/call]\n  tools: [echo]\n"
ERAS = ("legacy", "auto")
START_TIMEOUT = 60.0
ROUNDS = 10
WARMUP = 20
TARGET = 1.25
"""Passthrough (cached) p50 at most this multiple of direct's, in both eras (issue 15)."""


@dataclass(frozen=True, slots=True)
class Target:
    """One way to reach the echo tool (a row of the table): its label, its URL and the tool's name there."""

    path: str
    url: str
    tool: str
    new_arguments: bool = False
    """Each call sends different arguments (so a cache keyed on the body never hits)."""


@dataclass(slots=True)
class Measurement:
    """The latencies of one (path, era) and the wall time they took together."""

    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * 1000

    def rate(self) -> float:
        return len(self.latencies) / self.elapsed


class Child:
    """A started process whose output lines are read by a thread, so we can wait for a line with a deadline."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process = subprocess.Popen(
            argv, cwd=REPOSITORY, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str) -> str:
        """The first line (printed so far or within START_TIMEOUT) matching `pattern`, whenever it came."""
        for line in self.seen:  # it may have come before the line an earlier wait_for stopped at
            if re.search(pattern, line):
                return line
        deadline = time.monotonic() + START_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        tail = "\n".join(self.seen[-20:])
        raise SystemExit(f"{self.name} printed no line matching {pattern!r} within {START_TIMEOUT:g} s:\n{tail}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def running_stack(directory: Path) -> Iterator[tuple[dict[str, Target], str]]:
    """Start echo, the gateway and both nginx instances; yield the targets and a bearer token for them."""
    with ExitStack() as stack:

        def start(name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
            child = Child(name, argv, env)
            stack.callback(child.stop)
            return child

        echo = start("echo", [sys.executable, "-m", "examples.servers.echo", "--host", "127.0.0.1", "--port", "0"])
        echo_url = echo.wait_for(r"^READY ").split()[1]
        (directory / "servers.yaml").write_text(
            json.dumps({"servers": {"echo": {"transport": "streamable-http", "url": echo_url}}})
        )
        (directory / "scopes.yml").write_text(SCOPES)
        config = write_gateway_config(directory, key_env="BENCH_GATEWAY_KEY", kid="bench", rate_limit_per_second=0)
        env = {"BENCH_GATEWAY_KEY": SECRET}
        command = [sys.executable, "-m", "aggregator", "serve", "--config", str(config)]
        gateway = start("gateway", [*command, "--port", "0"], env)
        gateway_url = gateway.wait_for(r"^READY ").split()[1]
        gateway.wait_for(r"upstream\.connected upstream=echo ")
        nginx_urls: dict[int, str] = {}
        for ttl in (0, Settings().nginx.auth_cache_ttl):
            port = free_port()
            nginx = {
                "listen": f"127.0.0.1:{port}",
                "gateway_replicas": [gateway_url.split("/")[2]],
                "prefix": directory / f"nginx-ttl{ttl}",
                "auth_cache_ttl": ttl,
                **({"user": "root"} if os.geteuid() == 0 else {}),
            }
            # The gateway's own settings (as `nginx render --config` reads them): the cache generation
            # digests the auth settings, and nginx keeps nothing a gateway of other settings decided.
            os.environ["BENCH_GATEWAY_KEY"] = SECRET
            settings = load_settings(config, nginx=nginx)
            paths = NginxPaths.from_settings(settings)
            apply(settings, load_servers(directory / "servers.yaml"), NginxControl("nginx", paths), reload=False)
            daemon = "daemon off; error_log stderr notice;"
            argv = ["nginx", "-p", f"{paths.prefix}/", "-c", str(paths.config_file), "-g", daemon]
            start(f"nginx (auth_cache_ttl {ttl})", argv).wait_for("start worker process")
            nginx_urls[ttl] = f"http://127.0.0.1:{port}"
        mint = [sys.executable, "-m", "aggregator", "token", "mint", "--config", str(config)]
        minted = subprocess.run(
            [*mint, "--sub", "bench", "--scopes", "bench/echo"],
            cwd=REPOSITORY,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        uncached, cached = nginx_urls[0], nginx_urls[max(nginx_urls)]
        rows = [
            Target("direct", echo_url, "echo"),
            Target("passthrough, no cache", f"{uncached}/echo/mcp", "echo"),
            Target("passthrough, cached", f"{cached}/echo/mcp", "echo"),
            Target("passthrough, cached, new args", f"{cached}/echo/mcp", "echo", new_arguments=True),
            Target("aggregated", gateway_url, "echo__echo"),
            Target("aggregated via nginx", f"{cached}/mcp", "echo__echo"),
        ]
        targets = {target.path: target for target in rows}
        yield targets, minted.stdout.strip()


async def measure(targets: dict[str, Target], bearer: str, calls: int) -> dict[tuple[str, str], Measurement]:
    """Open one session per (path, era), warm each up, then time `calls` calls each, interleaved in rounds."""
    results = {(path, era): Measurement() for path in targets for era in ERAS}
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, trust_env=False) as http,
        anyio.create_task_group() as sessions,
    ):
        clients: dict[tuple[str, str], Client] = {}
        opened = anyio.Event()
        done = anyio.Event()

        async def session(key: tuple[str, str]) -> None:
            async with Client(streamable_http_client(targets[key[0]].url, http_client=http), mode=key[1]) as client:
                clients[key] = client
                if len(clients) == len(results):
                    opened.set()
                await done.wait()

        for key in results:
            sessions.start_soon(session, key)
        await opened.wait()
        for key, client in clients.items():
            for _ in range(WARMUP):
                await client.call_tool(targets[key[0]].tool, {"text": "warm"})
        per_round = max(1, calls // ROUNDS)
        for turn in range(ROUNDS):
            keys = list(results)
            for key in keys[turn % len(keys) :] + keys[: turn % len(keys)]:
                client, target, measurement = clients[key], targets[key[0]], results[key]
                started = time.perf_counter()
                for _ in range(per_round):
                    text = f"hello {len(measurement.latencies)} {turn}" if target.new_arguments else "hello"
                    before = time.perf_counter()
                    result = await client.call_tool(target.tool, {"text": text})
                    measurement.latencies.append(time.perf_counter() - before)
                    if result.is_error:
                        raise SystemExit(f"{key}: the echo call failed: {result.content}")
                measurement.elapsed += time.perf_counter() - started
        done.set()
    return results


ERA_NAMES = {"legacy": "2025-11-25", "auto": "2026-07-28"}


def ratio(results: dict[tuple[str, str], Measurement], path: str, era: str) -> float:
    """p50 of `path` as a multiple of direct's p50 in the same era."""
    return results[(path, era)].percentile(0.5) / results[("direct", era)].percentile(0.5)


def report(results: dict[tuple[str, str], Measurement]) -> str:
    rows = [
        "| path | era | p50 ms | p99 ms | calls/s | p50 / direct |",
        "|---|---|---|---|---|---|",
    ]
    for (path, era), m in sorted(results.items(), key=lambda item: item[0][1] != "legacy"):
        rows.append(
            f"| {path} | {ERA_NAMES[era]} | {m.percentile(0.5):.2f} | {m.percentile(0.99):.2f} | {m.rate():.0f} "
            f"| {ratio(results, path, era):.2f}x |"
        )
    return "\n".join(rows)


def checks(results: dict[tuple[str, str], Measurement]) -> list[tuple[str, bool]]:
    """The target per era: cached passthrough p50 within TARGET x direct (before: the uncached ratio)."""
    return [
        (
            f"{ERA_NAMES[era]}: passthrough p50 <= {TARGET}x direct: {ratio(results, 'passthrough, cached', era):.2f}x "
            f"(no cache: {ratio(results, 'passthrough, no cache', era):.2f}x)",
            ratio(results, "passthrough, cached", era) <= TARGET,
        )
        for era in ERAS
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=500, help="timed calls per (path, era) (default 500)")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mcp-bench-") as directory, running_stack(Path(directory)) as stack:
        targets, bearer = stack
        results = anyio.run(measure, targets, bearer, arguments.calls)
        hits = cache_outcomes(Path(directory) / f"nginx-ttl{Settings().nginx.auth_cache_ttl}" / "logs" / "access.log")
    print(f"echo tool, sequential calls, one client; {os.cpu_count()} cores; {arguments.calls} calls per row")
    print(report(results))
    print(f"caching nginx, /echo/mcp requests by where their decision came from (access log): {hits}")
    return print_checks(checks(results))


def cache_outcomes(access_log: Path) -> dict[str, int]:
    """How many /echo/mcp requests the caching nginx answered from its cache (HIT) and from the gateway (MISS)."""
    counts: dict[str, int] = {}
    for line in access_log.read_text().splitlines():
        if '"POST /echo/mcp ' in line and (found := re.search(r" auth=(\S+)$", line)):
            counts[found.group(1)] = counts.get(found.group(1), 0) + 1
    return counts


if __name__ == "__main__":
    raise SystemExit(main())
