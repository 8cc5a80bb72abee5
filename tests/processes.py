"""Child processes for tests: output captured line by line, waited on by pattern with a deadline."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.text import TextReceiveStream

SHUTDOWN_DEADLINE = 15.0


def free_port() -> int:
    """A loopback port nobody listens on right now (for servers that cannot report the port they bound)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write_gateway_config(directory: Path, *, key_env: str | None = None, kid: str = "tests", **settings: Any) -> Path:
    """Write `directory`/gateway.yaml for a gateway command and return it.

    It names servers.yaml, scopes.yml (when written) and data/ in `directory`; with `key_env`, the
    gateway verifies gateway tokens whose secret is that environment variable (under `kid`).
    Other settings are written as given.
    """
    config: dict[str, Any] = {"servers_file": "servers.yaml", "data_dir": "data"}
    if (directory / "scopes.yml").exists():
        config["scopes_file"] = "scopes.yml"
    if key_env is not None:
        config["auth"] = {"gateway_keys": [{"kid": kid, "secret_env": key_env}]}
    path = directory / "gateway.yaml"
    path.write_text(json.dumps({**config, **settings}))
    return path


class OutputLines:
    """Lines of text as they arrive (a process's output, a logger's records), waited on by pattern with a deadline."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._arrived = anyio.Event()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def mark(self) -> int:
        """Where the next line will be: pass it as `after` to look only at what comes later."""
        return len(self.lines)

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = anyio.Event()

    def ended(self) -> str | None:
        """Why no more lines can come (then waiting stops), or None."""
        return None

    async def wait_for(self, pattern: re.Pattern[str] | str, deadline: float, after: int = 0) -> str:
        """The first line (from index `after`) matching `pattern`; fails after `deadline` seconds."""
        compiled = re.compile(pattern)
        checked = after
        problem = f"no line matching {compiled.pattern!r} within {deadline} s"
        with anyio.move_on_after(deadline):
            while True:
                for line in self.lines[checked:]:
                    if compiled.search(line):
                        return line
                checked = max(checked, len(self.lines))
                if (reason := self.ended()) is not None:
                    problem = f"{reason} before a line matching {compiled.pattern!r}"
                    break
                await self._arrived.wait()
        raise AssertionError(f"{problem}; output:\n{self.output[-4000:]}")


class RunningProcess(OutputLines):
    """A started child process whose stdout and stderr lines are collected as they arrive."""

    def __init__(self, process: Process) -> None:
        super().__init__()
        self.process = process
        self._closed = anyio.Event()

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _collect(self, stream: ByteReceiveStream) -> None:
        pending = ""
        async for chunk in TextReceiveStream(stream, errors="replace"):
            pending += chunk
            *complete, pending = pending.split("\n")
            if complete:
                self.lines.extend(complete)
                self._wake()
        if pending:
            self.lines.append(pending)
        self._wake()

    def ended(self) -> str | None:
        if self.process.returncode is not None and self._closed.is_set():
            return f"process exited ({self.process.returncode})"
        return None

    async def stop(self) -> int:
        """Terminate (SIGTERM), wait, kill if needed; return the exit status."""
        with anyio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.terminate()
                with anyio.move_on_after(SHUTDOWN_DEADLINE):
                    await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
            status = await self.process.wait()
        return status


@asynccontextmanager
async def run_process(
    argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None
) -> AsyncIterator[RunningProcess]:
    """Start `argv`; collect its output; stop it (bounded) when the block ends."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = await anyio.open_process(list(argv), cwd=cwd, env=environment, stdin=subprocess.DEVNULL)
    running = RunningProcess(process)
    async with anyio.create_task_group() as collectors:
        assert process.stdout is not None and process.stderr is not None

        stdout, stderr = process.stdout, process.stderr

        async def collect_all() -> None:
            async with anyio.create_task_group() as streams:
                streams.start_soon(running._collect, stdout)
                streams.start_soon(running._collect, stderr)
            running._closed.set()
            running._wake()

        collectors.start_soon(collect_all)
        try:
            yield running
        finally:
            await running.stop()
            collectors.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await process.aclose()
