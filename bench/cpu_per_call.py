"""The gateway's own CPU per `tools/call`, two gateway versions side by side: robust on a loaded machine.

Run from the repository root::

    git worktree add /tmp/base <commit>                     # the version to compare against
    python bench/cpu_per_call.py --baseline /tmp/base       # this checkout against /tmp/base
    python bench/cpu_per_call.py --baseline /tmp/base --candidate /tmp/new --rounds 9 --calls 400

One echo upstream (`examples.servers.echo`, from this checkout) and, in front of it, one gateway per
version (`python -m aggregator serve --insecure-dev`, imported from that version's tree; the lean
path on, its default; the per-caller caps lifted as in `bench/latency.py`). One `mcp.Client` session
per (version, era) makes `--calls` sequential calls of the echo tool per round; each round visits
every (version, era) in a rotated order. Around each batch the gateway process's own CPU time
(its threads' run time from /proc, in nanoseconds) is read, so what other processes on the machine do
moves wall-clock time much more than this figure. It prints, per era, the median over rounds of
each version's CPU ms per call, their spread, the candidate / baseline ratio of the medians and the
median of the rounds' own ratios. Under heavy load (other processes on the same cores) the CPU per
call itself rises for both versions (caches, switches): read the ratios then, which short
interleaved rounds keep comparable. Without `--baseline` it measures the candidate alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from mcp import Client

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from bench.latency import (  # noqa: E402
    ERAS,
    HOP_CPU_TARGET_MS,
    START_TIMEOUT,
    Servers,
    Target,
    call_echo,
    rotated,
    wait_until_ready,
)

# `python -c` with the version's tree first on sys.path: its `aggregator` (and `examples`) are imported.
_LAUNCH = (
    "import runpy, sys; tree = sys.argv.pop(1); sys.path.insert(0, tree); "
    "runpy.run_module('aggregator', run_name='__main__', alter_sys=True)"
)


@dataclass(slots=True)
class Series:
    """CPU ms per call of one (version, era), one figure per round."""

    per_round: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.per_round)

    def spread(self) -> str:
        return f"{min(self.per_round):.3f}-{max(self.per_round):.3f}"


def cpu_seconds(pid: int) -> float:
    """CPU time of process `pid` so far: its threads' nanosecond run times (`schedstat`), finer than
    the clock ticks of `latency.CpuMeter` (10 ms); a thread that ended meanwhile is not counted."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def gateway_argv(tree: Path, config: Path) -> list[str]:
    serve = ["serve", "--servers", str(config), "--host", "127.0.0.1", "--port", "0", "--insecure-dev"]
    return [sys.executable, "-c", _LAUNCH, str(tree.resolve()), *serve]


@contextmanager
def running_gateways(versions: dict[str, Path]) -> Iterator[tuple[dict[str, Target], Servers]]:
    """The echo upstream and one gateway per version in front of it."""
    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mcp-cpu-")))
        servers = Servers(logs)
        stack.callback(servers.close)
        servers.start("echo", [sys.executable, "-m", "examples.servers.echo", "--host", "127.0.0.1", "--port", "0"])
        echo_url = servers.wait_ready("echo", time.monotonic() + START_TIMEOUT)
        for name, tree in versions.items():
            config = logs / f"{name}.yaml"
            config.write_text(f"servers:\n  echo:\n    transport: streamable-http\n    url: {echo_url}\n")
            environment = {
                "MCP_AGGREGATOR_DATA_DIR": str(logs / f"{name}-data"),
                "MCP_AGGREGATOR_LIMITS__MAX_CALLS_PER_PRINCIPAL": "100000",
                "MCP_AGGREGATOR_LIMITS__MAX_CALLS_PER_UPSTREAM": "100000",
            }
            servers.start(name, gateway_argv(tree, config), env=environment)
        targets = {}
        deadline = time.monotonic() + START_TIMEOUT
        for name in versions:
            url = servers.wait_ready(name, deadline)
            wait_until_ready(url.removesuffix("/mcp") + "/readyz", deadline)
            targets[name] = Target(name, url, "echo__echo", servers.pid(name))
        yield targets, servers


async def measure(targets: dict[str, Target], calls: int, rounds: int, warmup: int) -> dict[tuple[str, str], Series]:
    keys = [(name, era) for era in ERAS for name in targets]
    results = {key: Series() for key in keys}
    async with AsyncExitStack() as stack:
        clients: dict[tuple[str, str], Client] = {}
        for name, era in keys:
            client = await stack.enter_async_context(Client(targets[name].url, mode=era))
            for _ in range(warmup):
                await call_echo(client, targets[name])
            clients[name, era] = client
        for turn in range(rounds):
            for name, era in rotated(keys, turn):
                target = targets[name]
                assert target.hop_pid is not None
                before = cpu_seconds(target.hop_pid)
                for _ in range(calls):
                    await call_echo(clients[name, era], target)
                used = cpu_seconds(target.hop_pid) - before
                results[name, era].per_round.append(used / calls * 1000)
    return results


def report(results: dict[tuple[str, str], Series], names: Sequence[str], era_names: dict[str, str]) -> str:
    lines = ["| era | version | CPU ms/call (median) | per-round range |", "|---|---|---:|---:|"]
    for era in ERAS:
        for name in names:
            series = results[name, era]
            lines.append(f"| {era_names[era]} | {name} | {series.median:.3f} | {series.spread()} |")
    lines.append("")
    for era in ERAS:
        candidate = results["candidate", era]
        verdict = "met" if candidate.median <= HOP_CPU_TARGET_MS else "MISSED"
        text = (
            f"- {era_names[era]}: candidate {candidate.median:.3f} ms per call ({verdict}: <= {HOP_CPU_TARGET_MS} ms)"
        )
        if "baseline" in names:
            baseline = results["baseline", era]
            ratio = candidate.median / baseline.median
            text += f", baseline {baseline.median:.3f} ms, ratio {ratio:.2f}"
            # The ratio of each round's pair is steadier than the ratio of medians when load drifts.
            pairs = [c / b for c, b in zip(candidate.per_round, baseline.per_round, strict=True)]
            text += f" (per-round ratios: median {statistics.median(pairs):.2f}, {min(pairs):.2f}-{max(pairs):.2f})"
        lines.append(text)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, help="a checkout (e.g. a git worktree) of the version to compare with")
    parser.add_argument("--candidate", type=Path, default=REPOSITORY, help="the version measured (default: this one)")
    parser.add_argument("--calls", type=int, default=150, help="sequential calls per (version, era) per round")
    parser.add_argument("--rounds", type=int, default=15, help="rounds (each visits every version and era)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls per session first")
    args = parser.parse_args(argv)
    versions = {"candidate": args.candidate}
    if args.baseline is not None:
        versions = {"baseline": args.baseline, **versions}
    if not Path("/proc/self/task").is_dir():
        print("cpu_per_call.py: needs /proc to read a process's CPU time", file=sys.stderr)
        return 1
    with running_gateways(versions) as (targets, _):
        results = anyio.run(measure, targets, args.calls, args.rounds, args.warmup)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load {load}; {args.rounds} rounds x {args.calls} calls per (version, era) after {args.warmup} warm-up")
    for name, tree in versions.items():
        print(f"{name}: {tree.resolve()}")
    print(report(results, list(versions), {"legacy": "2025-11-25", "auto": "2026-07-28"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
