"""A bounded `mcp-fuzzer` campaign against a real, secured gateway, and the properties it must keep.

    python -m tests.fuzz.run_fuzzer [--runs N] [--runs-per-type N] [--seed S] [--findings FILE]

Serves the echo upstream and a gateway (both in-process) that lets the fuzzing principal see only the
echo tools (the admin tools stay hidden, so fuzzing cannot edit the registry), puts a recording TCP
proxy in front of it, and runs PyPI `mcp-fuzzer` twice through that proxy: tool fuzzing (realistic and aggressive
arguments) and protocol fuzzing (malformed MCP messages of every type). Then it checks what a hostile
client must never get: a hang, a crashed gateway, an HTTP 5xx, a stack trace or a path of this
machine in any answer, an unexpected exception in the gateway's log. The summary (what ran, how many
cases, what mcp-fuzzer flagged and how we classify it) is what `tests/fuzz/findings.json` records.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2

from tests.conftest import REPOSITORY
from tests.harness import LiveGateway, serve_gateway, serve_upstream, token_for

SCOPES = """
group_mappings:
  fuzzers: [echo-only]
echo-only:
- server: echo
  methods: ["*"]
  tools: ["*"]
"""
# What must never reach a caller: stack traces, source locations, paths of this machine (the campaign's
# own folder is added per run: it holds the gateway's config and data).
LEAKS = ("Traceback (most recent call last)", 'File "/', "site-packages", str(REPOSITORY))
# What must never appear in the gateway's own log while it is fuzzed.
LOG_PROBLEMS = ("Traceback", "request.failed", "upstream.unexpected_error", "Exception in ASGI application")
# How mcp-fuzzer's finding categories read for a gateway in front of an echo server.
CLASSIFICATION = {
    "accepted_malformed": "not a gateway defect: the gateway forwards arguments unchanged and the echo upstream "
    "accepts them; protocol cases the MCP SDK tolerates (extra or unknown fields, notifications) are answered "
    "as the spec allows",
    "injection_reflection": "not a gateway defect: echo__echo returns its input by design, and the gateway's "
    "'Unknown prompt/resource' errors quote the unknown name inside JSON (no markup context)",
}


@dataclass
class Run:
    """One mcp-fuzzer invocation."""

    mode: str
    argv: list[str]
    exit_status: int | None
    seconds: float
    hung: bool
    cases: int
    findings: dict[str, int]
    flagged: dict[str, list[str]]  # category -> the targets mcp-fuzzer flagged in it
    output_tail: str  # the fuzzer's last words, kept only when it failed


@dataclass
class Campaign:
    """What a campaign ran and what it saw."""

    fuzzer: str
    runs: list[Run] = field(default_factory=list)
    http_statuses: dict[str, int] = field(default_factory=dict)
    jsonrpc_errors: dict[str, int] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)
    gateway_log_problems: list[str] = field(default_factory=list)
    gateway_alive: bool = False
    still_serving: bool = False

    @property
    def cases(self) -> int:
        return sum(run.cases for run in self.runs)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.http_statuses.items() if status.startswith("5"))


class RecordingProxy:
    """A TCP proxy to `port` that keeps every byte the gateway sends back, to inspect afterwards."""

    def __init__(self, port: int) -> None:
        self._port = port
        self.received = bytearray()

    async def serve(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        await listener.serve(self._relay)

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        async with (
            client,
            await anyio.connect_tcp("127.0.0.1", self._port) as gateway,
            anyio.create_task_group() as pumps,
        ):
            pumps.start_soon(self._pump, client, gateway, False, pumps.cancel_scope)
            pumps.start_soon(self._pump, gateway, client, True, pumps.cancel_scope)

    async def _pump(
        self,
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        record: bool,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            async for chunk in source:
                if record:
                    self.received += chunk
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            scope.cancel()


@asynccontextmanager
async def fuzzable_gateway(directory: Path) -> AsyncIterator[LiveGateway]:
    """The echo upstream behind a secured gateway, both in-process."""
    async with serve_upstream("echo") as echo_url:
        servers = {"echo": {"transport": "streamable-http", "url": echo_url, "timeout": 2}}
        async with serve_gateway(
            directory,
            servers=servers,
            scopes=SCOPES,
            rate_limit_per_second=0,  # let every case reach the handlers
            # Fuzzed calls of echo__slow time out (2 s); an open circuit would turn later cases away unheard.
            limits={"circuit_failures": 1_000_000},
        ) as live:
            yield live


async def fuzz(url: str, token: str, mode: list[str], reports: Path, seed: int, deadline: float, label: str) -> Run:
    """Run mcp-fuzzer once against `url`; a run past `deadline` seconds is a hang."""
    argv = [
        *("--protocol", "http", "--no-network", "--auth-env"),
        *("--seed", str(seed), "--timeout", "10", "--tool-timeout", "5"),
        *mode,
    ]
    environment = {**os.environ, "MCP_API_KEY": token, "MCP_FUZZER_CI": "1"}
    started = anyio.current_time()
    status: int | None = None
    output = ""
    with anyio.move_on_after(deadline):
        command = [sys.executable, "-m", "mcp_fuzzer", *argv, "--endpoint", url, "--output-dir", str(reports / label)]
        done = await anyio.run_process(command, env=environment, check=False)
        status = done.returncode
        output = (done.stdout + done.stderr).decode(errors="replace")
    summary_file = reports / label / "run_summary.json"
    summary: dict[str, Any] = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    tools = summary.get("tools", {}).get("by_name", {})
    cases = sum(tool.get("total_runs", 0) for tool in tools.values()) + summary.get("protocols", {}).get(
        "total_runs", 0
    )
    return Run(
        mode=label,
        argv=["mcp-fuzzer", *argv, "--endpoint", "<gateway>/mcp"],
        exit_status=status,
        seconds=round(anyio.current_time() - started, 1),
        hung=status is None,
        cases=cases,
        findings=summary.get("findings", {}).get("by_category", {}),
        flagged=flagged_targets(reports / label / "findings.json"),
        output_tail=output[-2000:] if status else "",
    )


def flagged_targets(findings_file: Path) -> dict[str, list[str]]:
    """mcp-fuzzer's findings file, reduced to category -> flagged targets."""
    if not findings_file.exists():
        return {}
    targets: dict[str, set[str]] = {}
    for finding in json.loads(findings_file.read_text()).get("findings", []):
        targets.setdefault(finding["category"], set()).add(str(finding.get("target")))
    return {category: sorted(names) for category, names in sorted(targets.items())}


async def campaign(runs: int, runs_per_type: int, seed: int, deadline: float = 60.0) -> Campaign:
    """Fuzz a fresh gateway (tools, then protocol) and check it afterwards."""
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        async with fuzzable_gateway(directory) as live, anyio.create_task_group() as background:
            proxy = RecordingProxy(int(live.address.rsplit(":", 1)[1]))
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            background.start_soon(proxy.serve, listener)
            proxied = f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}/mcp"
            token = token_for("fuzzer", groups=["fuzzers"], ttl=3600)
            result = Campaign(fuzzer=f"mcp-fuzzer v{importlib.metadata.version('mcp-fuzzer')}")  # as its --version says
            reports = directory / "reports"
            tools = ["--mode", "tools", "--phase", "both", "--runs", str(runs)]
            protocol = ["--mode", "protocol", "--protocol-phase", "aggressive", "--runs-per-type", str(runs_per_type)]
            result.runs.append(await fuzz(proxied, token, tools, reports, seed, deadline, "tools"))
            result.runs.append(await fuzz(proxied, token, protocol, reports, seed, deadline, "protocol"))
            result.gateway_alive = True  # an in-process gateway that crashed would have raised out of this block
            result.still_serving = await serves(live.url, token)
            background.cancel_scope.cancel()
        statuses = Counter(match.decode() for match in re.findall(rb"HTTP/1\.1 (\d{3}) ", proxy.received))
        result.http_statuses = dict(sorted(statuses.items()))
        text = proxy.received.decode("utf-8", errors="replace")
        result.leaks = [leak for leak in (*LEAKS, str(directory)) if leak in text]
        codes = Counter(match for match in re.findall(r'"error":\{"code":(-?\d+)', text))
        result.jsonrpc_errors = dict(sorted(codes.items()))
        result.gateway_log_problems = [line for line in live.log.lines if any(p in line for p in LOG_PROBLEMS)]
    return result


async def serves(url: str, token: str) -> bool:
    """Whether the gateway still answers a real call after the campaign."""
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "echo__echo",
    }
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo__echo", "arguments": {"text": "after fuzzing"}, "_meta": meta},
    }
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as client:
        try:
            response = await client.post(url, json=body, headers=headers)
        except httpx2.HTTPError:
            return False
    return response.status_code == 200 and '"after fuzzing"' in response.text


def findings_document(result: Campaign, arguments: argparse.Namespace) -> dict[str, Any]:
    """The commit-ready record of one campaign."""
    flagged = Counter[str]()
    targets: dict[str, set[str]] = {}
    for run in result.runs:
        flagged.update(run.findings)
        for category, names in run.flagged.items():
            targets.setdefault(category, set()).update(names)
    return {
        "fuzzer": result.fuzzer,
        "command": f"python -m tests.fuzz.run_fuzzer --runs {arguments.runs} --runs-per-type "
        f"{arguments.runs_per_type} --seed {arguments.seed}",
        "target": "the gateway as `mcp-aggregator serve` builds it, in-process (gateway-key auth; the fuzzing "
        "principal sees only the echo upstream's tools; echo timeout 2 s) behind a recording TCP proxy",
        "cases": result.cases,
        "runs": [asdict(run) for run in result.runs],
        "properties": {
            "hangs": sum(run.hung for run in result.runs),
            "gateway_alive_after": result.gateway_alive,
            "gateway_serving_after": result.still_serving,
            "http_statuses": result.http_statuses,
            "http_5xx": result.server_errors,
            "jsonrpc_error_codes": result.jsonrpc_errors,
            "leaks_in_answers": result.leaks,
            "gateway_log_problems": result.gateway_log_problems,
        },
        "mcp_fuzzer_flags": {
            category: {
                "count": count,
                "targets": sorted(targets.get(category, ())),
                "assessment": CLASSIFICATION.get(category, "unclassified: look into it"),
            }
            for category, count in sorted(flagged.items())
        },
        "gateway_defects": defects(result),
    }


def defects(result: Campaign) -> list[str]:
    """The properties a campaign broke (empty when the gateway held up)."""
    broken = [f"mcp-fuzzer {run.mode} run hung (no exit within the deadline)" for run in result.runs if run.hung]
    broken += [f"mcp-fuzzer {run.mode} run exited {run.exit_status}" for run in result.runs if run.exit_status]
    if not (result.gateway_alive and result.still_serving):
        broken.append("the gateway stopped serving")
    if result.server_errors:
        broken.append(f"{result.server_errors} HTTP 5xx answers")
    broken += [f"an answer contained {leak!r}" for leak in result.leaks]
    broken += [f"gateway log: {line}" for line in result.gateway_log_problems]
    return broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25, help="tool runs per tool and phase")
    parser.add_argument("--runs-per-type", type=int, default=10, help="protocol runs per message type")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--findings", type=Path, help="write the findings document here")
    arguments = parser.parse_args()
    result = anyio.run(campaign, arguments.runs, arguments.runs_per_type, arguments.seed)
    document = findings_document(result, arguments)
    text = json.dumps(document, indent=2) + "\n"
    if arguments.findings is not None:
        arguments.findings.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
