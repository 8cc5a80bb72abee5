"""What the gateway hop costs: one client calling the echo tool directly, through the gateway, and through fastmcp.

Run from the repository root::

    python bench/latency.py            # full run: ~2 minutes on a quiet 2-core machine, longer under load
    python bench/latency.py --quick    # smoke run, about 20 seconds

One run starts the servers as subprocesses on loopback ports: the echo upstream
(`examples.servers.echo`), three gateways (`python -m aggregator serve --insecure-dev`, their
per-caller and per-upstream concurrency caps lifted since every session is the same principal):
`gateway` with the lean path (the default), `gateway-sdk` with `lean_path: false` (every request
through the SDK's session layers), `gateway-stdio` in front of the same echo over stdio
(`bench/_echo_stdio.py`), and, as the peer, fastmcp's default `create_proxy(url)` in front of the
HTTP upstream (`bench/_fastmcp_proxy.py`). The same `mcp.Client` then calls the echo tool on each
path in both protocol eras (`mode="legacy"` -> 2025-11-25, `mode="auto"` -> 2026-07-28):

* sequential: one session per (path, era), warm-up calls, then `--calls` timed calls -> p50, p99, calls/s;
* concurrent: `--sessions` sessions per (path, era), opened first, each making `--session-calls` calls.

Measurements are interleaved: each phase runs in rounds, and every round visits every (path, era) in a
rotated order, so machine noise lands on all paths alike. Wall-clock figures move with the machine's
load; the CPU columns (from /proc, per call, sequential phase) are steadier: "hop" is the process in
the middle (gateway or fastmcp proxy), "echo" the upstream, "client" this process. A call that fails is
counted under "failed calls" and left out of every rate; the run goes on and shows what the servers logged.

The fastmcp proxy opens a new upstream session per request (tens of ms), so to keep the run short it
makes a third of the sequential calls and `--proxy-share` of the concurrent ones; its rates stay comparable.
The gateway inherits the environment: `MCP_AGGREGATOR_LOG_LEVEL=warning python bench/latency.py`
measures it with request logging off, and `--gateway-launcher` runs a patched copy instead.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import FrameType

import anyio
from anyio.abc import TaskGroup
from mcp import Client
from mcp.shared.exceptions import MCPError

REPOSITORY = Path(__file__).resolve().parent.parent
ERAS = ("legacy", "auto")
PATHS = ("direct", "gateway", "gateway-sdk", "gateway-stdio", "fastmcp")
GATEWAYS = {
    # path: (how the echo upstream is reached, extra environment of the gateway)
    "gateway": ("streamable-http", {}),
    "gateway-sdk": ("streamable-http", {"MCP_AGGREGATOR_LEAN_PATH": "false"}),
    "gateway-stdio": ("stdio", {}),
}
ARGUMENTS = {"text": "hello"}

# The targets of issue 15, printed as a checklist for the lean gateway ("gateway").
LATENCY_RATIO_TARGET = 1.35
"""Sequential p50 at most this multiple of direct, in both eras."""
THROUGHPUT_TARGET = 0.75
"""50-session throughput at least this share of direct, in both eras."""
PEER_SPEEDUP_TARGET = 10.0
"""At least this many times faster than fastmcp's proxy at p50."""
HOP_CPU_TARGET_MS = 1.5
"""The gateway's own CPU per call."""

START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
CALL_TIMEOUT = 30.0


class BenchmarkError(Exception):
    """A server did not start, or a call did not answer as the echo tool does."""


@dataclass(frozen=True, slots=True)
class Target:
    """One way to reach the echo tool; `hop_pid` is the process between client and upstream, if any."""

    path: str
    url: str
    tool: str
    hop_pid: int | None


@dataclass(slots=True)
class Measurement:
    """Everything measured for one (path, era)."""

    era_version: str = "?"
    latencies: list[float] = field(default_factory=list)
    concurrent_calls: int = 0
    concurrent_seconds: float = 0.0
    round_rates: list[float] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU spent during the sequential calls, by role: client, echo, hop."""
    failures: int = 0
    """Calls that failed (either phase); they count in no latency or rate."""
    first_failure: str | None = None

    def fail(self, message: str) -> None:
        self.failures += 1
        self.first_failure = self.first_failure or message

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]

    @property
    def sequential_rate(self) -> float:
        return len(self.latencies) / sum(self.latencies) if self.latencies else math.nan

    @property
    def concurrent_rate(self) -> float:
        return self.concurrent_calls / self.concurrent_seconds

    def cpu_per_call_ms(self, role: str) -> float | None:
        seconds = self.cpu_seconds.get(role)
        return None if seconds is None or not self.latencies else seconds / len(self.latencies) * 1000


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure, from the command line."""

    calls: int
    warmup: int
    sequential_rounds: int
    sessions: int
    session_calls: int
    concurrent_rounds: int
    proxy_calls: int
    proxy_share: float
    paths: tuple[str, ...]
    gateway_launcher: Path | None


# --- servers -------------------------------------------------------------------------------------


class Servers:
    """The benchmark's subprocesses; closing stops every one (terminate, wait, kill), newest first."""

    def __init__(self, log_directory: Path) -> None:
        self._log_directory = log_directory
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        """Start `argv` with stdout and stderr going to `<name>.log` in the log directory."""
        with (self._log_directory / f"{name}.log").open("wb") as log:
            self._children[name] = subprocess.Popen(
                argv,
                cwd=REPOSITORY,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Our own Ctrl-C handling stops the children in order; the terminal's SIGINT must not race it.
                start_new_session=True,
            )

    def wait_ready(self, name: str, deadline: float) -> str:
        """The URL of the `READY <url>` line `name` prints once it listens."""
        child = self._children[name]
        while time.monotonic() < deadline:
            for line in (self._log_directory / f"{name}.log").read_text(errors="replace").splitlines():
                if line.startswith("READY "):
                    return line.split()[1]
            if child.poll() is not None:
                raise BenchmarkError(f"{name} exited with {child.returncode} before READY:\n{self.tail(name)}")
            time.sleep(0.05)
        raise BenchmarkError(f"{name} printed no READY line within {START_TIMEOUT:g} s:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 20) -> str:
        text = (self._log_directory / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def excerpt(self, lines: int = 12) -> str:
        """The last log lines of every server other than per-request access lines, for a failure report."""
        parts = []
        for name in self._children:
            text = (self._log_directory / f"{name}.log").read_text(errors="replace").splitlines()
            kept = [line for line in text if " info request " not in line][-lines:]
            parts.append(f"--- {name} log (last {len(kept)} lines, request lines omitted) ---\n" + "\n".join(kept))
        return "\n".join(parts)

    def pid(self, name: str) -> int:
        return self._children[name].pid

    def close(self) -> None:
        children = list(reversed(self._children.values()))
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()


def wait_until_ready(url: str, deadline: float) -> None:
    """Poll the gateway's /readyz until every upstream is connected."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise BenchmarkError(f"{url} did not answer 200 within {START_TIMEOUT:g} s")


@contextmanager
def running_servers(
    paths: Sequence[str], gateway_launcher: Path | None = None
) -> Iterator[tuple[dict[str, Target], Servers]]:
    """Start the echo upstream and, in front of it, the gateway and the fastmcp proxy."""
    with ExitStack() as stack:
        log_directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mcp-bench-")))
        servers = Servers(log_directory)
        stack.callback(servers.close)
        python = sys.executable
        servers.start("echo", [python, "-m", "examples.servers.echo", "--host", "127.0.0.1", "--port", "0"])
        echo_url = servers.wait_ready("echo", time.monotonic() + START_TIMEOUT)
        targets = {"direct": Target("direct", echo_url, "echo", None)}

        launcher = [python, str(gateway_launcher)] if gateway_launcher else [python, "-m", "aggregator"]
        for path, (transport, extra) in GATEWAYS.items():
            if path not in paths:
                continue
            config = log_directory / f"{path}.yaml"
            if transport == "stdio":
                echo = f"transport: stdio\n    command: {python}\n    args: [{REPOSITORY / 'bench' / '_echo_stdio.py'}]"
            else:
                echo = f"transport: streamable-http\n    url: {echo_url}"
            config.write_text(f"servers:\n  echo:\n    {echo}\n")
            # No token verifier: the benchmark measures the hop, not JWT checks (every caller is unrestricted).
            serve = ["serve", "--servers", str(config), "--host", "127.0.0.1", "--port", "0", "--insecure-dev"]
            environment = {
                "MCP_AGGREGATOR_DATA_DIR": str(log_directory / f"{path}-data"),  # the audit log, out of the repository
                # Every benchmark session is the same (unrestricted) principal: lift the per-caller concurrency cap.
                "MCP_AGGREGATOR_LIMITS__MAX_CALLS_PER_PRINCIPAL": "100000",
                "MCP_AGGREGATOR_LIMITS__MAX_CALLS_PER_UPSTREAM": "100000",
                **extra,
            }
            servers.start(path, [*launcher, *serve], env=environment)
        if "fastmcp" in paths:
            servers.start("fastmcp", [python, str(REPOSITORY / "bench" / "_fastmcp_proxy.py"), echo_url])

        deadline = time.monotonic() + START_TIMEOUT
        for path in GATEWAYS:
            if path in paths:
                url = servers.wait_ready(path, deadline)
                wait_until_ready(url.removesuffix("/mcp") + "/readyz", deadline)
                targets[path] = Target(path, url, "echo__echo", servers.pid(path))
        if "fastmcp" in paths:
            url = servers.wait_ready("fastmcp", deadline)
            targets["fastmcp"] = Target("fastmcp", url, "echo", servers.pid("fastmcp"))
        yield targets, servers


# --- measuring -----------------------------------------------------------------------------------


class CpuMeter:
    """Reads the CPU time (user + system) used so far by this process and by each server process."""

    def __init__(self, echo_pid: int) -> None:
        self._echo_pid = echo_pid
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = Path(f"/proc/{echo_pid}/stat").exists()

    def read(self, target: Target) -> dict[str, float]:
        if not self.available:
            return {}
        seconds = {"client": time.process_time(), "echo": self._process(self._echo_pid)}
        if target.hop_pid is not None:
            seconds["hop"] = self._process(target.hop_pid)
        return seconds

    def _process(self, pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime, in clock ticks


async def call_echo(client: Client, target: Target) -> None:
    try:
        result = await client.call_tool(target.tool, ARGUMENTS, read_timeout_seconds=CALL_TIMEOUT)
    except MCPError as error:
        raise BenchmarkError(f"{target.path} ({client.protocol_version}): {target.tool} failed: {error}") from None
    if result.is_error:
        raise BenchmarkError(f"{target.path} ({client.protocol_version}): {target.tool} failed: {result.content}")


def shares(total: int, rounds: int) -> list[int]:
    """`total` split into `rounds` near-equal parts."""
    return [total // rounds + (1 if index < total % rounds else 0) for index in range(rounds)]


def rotated(keys: Sequence[tuple[str, str]], turn: int) -> list[tuple[str, str]]:
    turn %= len(keys)
    return [*keys[turn:], *keys[:turn]]


async def measure_sequential(
    targets: dict[str, Target], plan: Plan, meter: CpuMeter, results: dict[tuple[str, str], Measurement]
) -> None:
    """One long-lived session per (path, era); each round makes a share of `plan.calls` on every one."""
    keys = list(results)
    async with AsyncExitStack() as stack:
        clients: dict[tuple[str, str], Client] = {}
        for path, era in keys:
            client = await stack.enter_async_context(Client(targets[path].url, mode=era))
            results[path, era].era_version = str(client.protocol_version)
            for _ in range(plan.warmup):
                await call_echo(client, targets[path])
            clients[path, era] = client
        per_round = {
            path: shares(plan.proxy_calls if path == "fastmcp" else plan.calls, plan.sequential_rounds)
            for path in plan.paths
        }
        for turn in range(plan.sequential_rounds):
            for path, era in rotated(keys, turn):
                client, target, measurement = clients[path, era], targets[path], results[path, era]
                cpu_before = meter.read(target)
                for _ in range(per_round[path][turn]):
                    started = time.perf_counter()
                    try:
                        await call_echo(client, target)
                    except BenchmarkError as error:
                        measurement.fail(str(error))
                        continue
                    measurement.latencies.append(time.perf_counter() - started)
                for role, seconds in meter.read(target).items():
                    used = seconds - cpu_before[role]
                    measurement.cpu_seconds[role] = measurement.cpu_seconds.get(role, 0.0) + used


class SessionGroup:
    """`size` open sessions to one target, released together once per round and timed as one burst.

    The sessions stay open across rounds, so a round times calls only, not handshakes.
    """

    def __init__(self, target: Target, era: str, size: int) -> None:
        self.target, self.era, self.size = target, era, size
        self._opened = 0
        self._ready = anyio.Event()
        self._go = anyio.Event()
        self._done = anyio.Event()
        self._calls = 0
        self._finished: list[float] = []
        self._closing = False
        self.failures: list[str] = []
        """Messages of the calls that failed, over all bursts."""

    async def open(self, group: TaskGroup) -> None:
        """Start the sessions in `group` and return once every one has answered a warm-up call."""
        for _ in range(self.size):
            group.start_soon(self._session)
        with anyio.fail_after(START_TIMEOUT):
            await self._ready.wait()

    async def burst(self, calls: int) -> float:
        """Let every session make `calls` calls at once; seconds until the last one finishes."""
        self._calls, self._finished, self._done = calls, [], anyio.Event()
        go, self._go = self._go, anyio.Event()  # sessions loop back to wait on the fresh event
        started = time.perf_counter()
        go.set()
        await self._done.wait()
        return max(self._finished) - started

    def close(self) -> None:
        self._closing = True
        self._go.set()

    async def _session(self) -> None:
        async with Client(self.target.url, mode=self.era) as client:
            try:
                await call_echo(client, self.target)
            except BenchmarkError as error:
                self.failures.append(str(error))
            self._opened += 1
            if self._opened == self.size:
                self._ready.set()
            while True:
                await self._go.wait()
                if self._closing:
                    return
                for _ in range(self._calls):
                    try:
                        await call_echo(client, self.target)
                    except BenchmarkError as error:  # a failure under load is a result, not the end of the run
                        self.failures.append(str(error))
                self._finished.append(time.perf_counter())
                if len(self._finished) == self.size:
                    self._done.set()


async def measure_concurrent(
    targets: dict[str, Target], plan: Plan, results: dict[tuple[str, str], Measurement]
) -> None:
    """`plan.sessions` sessions per (path, era), all opened first; each round times one burst per (path, era)."""
    keys = list(results)
    async with anyio.create_task_group() as task_group:
        groups: dict[tuple[str, str], SessionGroup] = {}
        try:
            for path, era in keys:
                groups[path, era] = group = SessionGroup(targets[path], era, plan.sessions)
                await group.open(task_group)
                for message in group.failures:  # warm-up calls
                    results[path, era].fail(message)
            for turn in range(plan.concurrent_rounds):
                for path, era in rotated(keys, turn):
                    share = plan.proxy_share if path == "fastmcp" else 1.0
                    calls = max(1, round(plan.session_calls * share / plan.concurrent_rounds))
                    group, measurement = groups[path, era], results[path, era]
                    failed_before = len(group.failures)
                    seconds = await group.burst(calls)
                    for message in group.failures[failed_before:]:
                        measurement.fail(message)
                    succeeded = plan.sessions * calls - (len(group.failures) - failed_before)
                    measurement.concurrent_calls += succeeded
                    measurement.concurrent_seconds += seconds
                    measurement.round_rates.append(succeeded / seconds)
        finally:
            for group in groups.values():
                group.close()


async def measure(targets: dict[str, Target], plan: Plan, meter: CpuMeter) -> dict[tuple[str, str], Measurement]:
    results = {(path, era): Measurement() for era in ERAS for path in plan.paths}
    phase_started = time.monotonic()
    await measure_sequential(targets, plan, meter, results)
    print(f"sequential phase: {time.monotonic() - phase_started:.1f} s", file=sys.stderr)
    phase_started = time.monotonic()
    await measure_concurrent(targets, plan, results)
    print(f"concurrent phase: {time.monotonic() - phase_started:.1f} s", file=sys.stderr)
    return results


# --- reporting -----------------------------------------------------------------------------------


def report(results: dict[tuple[str, str], Measurement], plan: Plan) -> str:
    lines = [
        "| path | era | seq p50 ms | seq p99 ms | seq calls/s | conc calls/s | per-round range | conc calls "
        "| CPU ms/call: hop | echo | client | failed calls |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (path, _), m in results.items():
        low, high = min(m.round_rates), max(m.round_rates)
        cpu = " | ".join(_milliseconds(m.cpu_per_call_ms(role)) for role in ("hop", "echo", "client"))
        lines.append(
            f"| {path} | {m.era_version} | {m.percentile(0.5) * 1000:.2f} | {m.percentile(0.99) * 1000:.2f} "
            f"| {m.sequential_rate:.0f} | {m.concurrent_rate:.0f} | {low:.0f}-{high:.0f} | {m.concurrent_calls} "
            f"| {cpu} | {m.failures} |"
        )
    lines.append("")
    for era in ERAS:
        direct = results["direct", era]
        for path in plan.paths[1:]:
            hop = results[path, era]
            ratio = hop.percentile(0.5) / direct.percentile(0.5)
            overhead = (hop.percentile(0.5) - direct.percentile(0.5)) * 1000
            throughput = hop.concurrent_rate / direct.concurrent_rate
            sequential = hop.sequential_rate / direct.sequential_rate
            lines.append(
                f"- {path} {direct.era_version}: p50 {ratio:.2f}x direct ({overhead:+.2f} ms), concurrent throughput "
                f"{throughput:.0%} of direct (sequential {sequential:.0%})"
            )
    lines += ["", *checklist(results, plan)]
    for m in results.values():
        if m.first_failure:
            lines.append(f"- FAILED {m.failures} calls, the first: {m.first_failure}")
    return "\n".join(lines)


def checklist(results: dict[tuple[str, str], Measurement], plan: Plan) -> list[str]:
    """The targets of issue 15 for the lean gateway, each marked met or MISSED, from this run alone."""
    if "gateway" not in plan.paths:
        return []
    lines = ["Targets (the lean `gateway`, this run):"]

    def item(met: bool, text: str) -> None:
        lines.append(f"- [{'x' if met else ' '}] {'met' if met else 'MISSED'}: {text}")

    for era in ERAS:
        direct, gateway = results["direct", era], results["gateway", era]
        ratio = gateway.percentile(0.5) / direct.percentile(0.5)
        share = gateway.concurrent_rate / direct.concurrent_rate
        item(
            ratio <= LATENCY_RATIO_TARGET, f"{direct.era_version} p50 {ratio:.2f}x direct (<= {LATENCY_RATIO_TARGET}x)"
        )
        item(
            share >= THROUGHPUT_TARGET,
            f"{direct.era_version} {plan.sessions}-session throughput {share:.0%} of direct "
            f"(>= {THROUGHPUT_TARGET:.0%})",
        )
        if "fastmcp" in plan.paths:
            speedup = results["fastmcp", era].percentile(0.5) / gateway.percentile(0.5)
            item(
                speedup >= PEER_SPEEDUP_TARGET,
                f"{direct.era_version} {speedup:.1f}x faster than fastmcp's proxy at p50 (>= {PEER_SPEEDUP_TARGET:g}x)",
            )
        cpu = gateway.cpu_per_call_ms("hop")
        if cpu is not None:
            item(
                cpu <= HOP_CPU_TARGET_MS,
                f"{direct.era_version} gateway CPU {cpu:.2f} ms per call (<= {HOP_CPU_TARGET_MS} ms)",
            )
    lines.append("- nginx passthrough <= 1.25x direct: measured by bench/passthrough.py, not here")
    return lines


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def header(plan: Plan) -> str:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    log_level = os.environ.get("MCP_AGGREGATOR_LOG_LEVEL", "info (default)")
    launcher = f"; gateway launcher {plan.gateway_launcher}" if plan.gateway_launcher else ""
    return (
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {load}; mcp {version('mcp')}, "
        f"fastmcp {version('fastmcp')}; gateway log level {log_level}{launcher}\n"
        f"sequential: {plan.calls} calls (fastmcp {plan.proxy_calls}) after {plan.warmup} warm-up per (path, era), "
        f"{plan.sequential_rounds} rounds; concurrent: {plan.sessions} sessions x {plan.session_calls} calls "
        f"(fastmcp x {plan.proxy_share:g}), {plan.concurrent_rounds} rounds\n"
    )


# --- command line --------------------------------------------------------------------------------


def parse_plan(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, help="timed sequential calls per (path, era) (default 300)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (default 30)")
    parser.add_argument("--sessions", type=int, help="concurrent sessions per (path, era) (default 50)")
    parser.add_argument("--session-calls", type=int, help="calls per concurrent session (default 30)")
    parser.add_argument("--rounds", type=int, help="concurrent rounds (default 3); sequential uses 10")
    parser.add_argument(
        "--proxy-share", type=float, default=0.1, help="fraction of concurrent calls the fastmcp proxy makes"
    )
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help=f"comma-separated subset of {','.join(PATHS[1:])} (direct is implied)",
    )
    parser.add_argument(
        "--gateway-launcher",
        type=Path,
        help="a script to run instead of `python -m aggregator` (same arguments), e.g. a patched copy to compare",
    )
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    args = parser.parse_args(argv)
    if unknown := set(args.paths.split(",")) - set(PATHS):
        parser.error(f"unknown path(s): {', '.join(sorted(unknown))}")
    paths = ("direct", *(p for p in PATHS[1:] if p in args.paths.split(",")))

    def pick(value: int | None, full: int, small: int) -> int:
        return value if value is not None else small if args.quick else full

    calls = pick(args.calls, 300, 30)
    return Plan(
        calls=calls,
        warmup=pick(args.warmup, 30, 5),
        sequential_rounds=pick(None, 10, 3),
        sessions=pick(args.sessions, 50, 10),
        session_calls=pick(args.session_calls, 30, 8),
        concurrent_rounds=pick(args.rounds, 3, 2),
        proxy_calls=max(1, calls // 3),
        proxy_share=args.proxy_share,
        paths=paths,
        gateway_launcher=args.gateway_launcher,
    )


def _first_failure(error: BaseException) -> BaseException:
    """The first leaf of (possibly nested) exception groups raised by the task groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _describe(error: BaseException) -> str:
    if isinstance(error, BenchmarkError):
        return str(error)
    return "".join(traceback.format_exception(error)).rstrip()  # unexpected: keep the traceback


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_plan(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # so `finally` stops the servers on SIGTERM too
    started = time.monotonic()
    try:
        with running_servers(plan.paths, plan.gateway_launcher) as (targets, servers):
            pids = ", ".join(f"{name} {servers.pid(name)}" for name in ("echo", *plan.paths[1:]))
            print(f"servers up in {time.monotonic() - started:.1f} s (pids: {pids})", file=sys.stderr)
            text = header(plan)
            try:
                results = anyio.run(measure, targets, plan, CpuMeter(servers.pid("echo")))
            except Exception as error:  # noqa: BLE001 - top level: report the first failure and the servers' logs
                raise BenchmarkError(f"{_describe(_first_failure(error))}\n{servers.excerpt()}") from None
            failed = any(measurement.failures for measurement in results.values())
            logs = f"\n\nSome calls failed; what the servers logged:\n{servers.excerpt()}" if failed else ""
    except BenchmarkError as error:
        print(f"latency.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(text + "\n" + report(results, plan) + logs)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
