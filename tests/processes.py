"""Child processes for tests: output captured line by line, waited on by pattern with a deadline."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.text import TextReceiveStream

SHUTDOWN_DEADLINE = 15.0


class RunningProcess:
    """A started child process whose stdout and stderr lines are collected as they arrive."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new_line = anyio.Event()
        self._closed = anyio.Event()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def _collect(self, stream: ByteReceiveStream) -> None:
        pending = ""
        async for chunk in TextReceiveStream(stream, errors="replace"):
            pending += chunk
            *complete, pending = pending.split("\n")
            if complete:
                self.lines.extend(complete)
                self._new_line.set()
                self._new_line = anyio.Event()
        if pending:
            self.lines.append(pending)
        self._new_line.set()

    async def wait_for(self, pattern: re.Pattern[str], deadline: float, after: int = 0) -> str:
        """The first output line (from index `after`) matching `pattern`; fails after `deadline` seconds."""
        checked = after
        problem = f"no line matching {pattern.pattern!r} within {deadline} s"
        with anyio.move_on_after(deadline):
            while True:
                for line in self.lines[checked:]:
                    if pattern.search(line):
                        return line
                checked = max(checked, len(self.lines))
                if self.process.returncode is not None and self._closed.is_set():
                    problem = f"process exited ({self.process.returncode}) before a line matching {pattern.pattern!r}"
                    break
                await self._new_line.wait()
        raise AssertionError(f"{problem}; output:\n{self.output[-4000:]}")

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
            running._new_line.set()

        collectors.start_soon(collect_all)
        try:
            yield running
        finally:
            await running.stop()
            collectors.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await process.aclose()
