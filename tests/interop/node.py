"""Third-party MCP clients that run on Node 22 (`tools/node22`, npm packages in `tools/node_modules`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteReceiveStream

from tests.conftest import REPOSITORY

TOOLS = REPOSITORY / "tools"
NODE22 = TOOLS / "node22"
NODE_MODULES = TOOLS / "node_modules"
CLIENT_DEADLINE = 30.0


def requires(package: str) -> pytest.MarkDecorator:
    """Skip unless `npm ci` in tools/ installed `package` and the Node 22 package."""
    return pytest.mark.skipif(
        not (NODE_MODULES / package).is_dir() or not (NODE_MODULES / "node").is_dir(),
        reason=f"tools/node_modules/{package} (or the Node 22 package) is missing; run 'npm ci' in tools/",
    )


def redacted(text: str) -> str:
    """`text` without bearer tokens, for failure messages."""
    return re.sub(r"Bearer \S+", "Bearer <token>", text)


@dataclass(frozen=True)
class Finished:
    """A client process that exited: its command line, exit status and output."""

    argv: Sequence[str]
    status: int
    stdout: str
    stderr: str

    def last_json(self, text: str) -> Any:
        """The last line of `text` that is a JSON object, parsed."""
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise AssertionError(f"no JSON line in the output of {self}")

    def __str__(self) -> str:
        command = " ".join(str(part) for part in self.argv)
        return redacted(
            f"`{command}` exited {self.status}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"
        )


async def run_node(
    args: Sequence[str | Path], *, env: Mapping[str, str], deadline: float = CLIENT_DEADLINE
) -> Finished:
    """Run `tools/node22 *args` to completion; kill its process group if it outlives `deadline` seconds."""
    argv = [str(NODE22), *(str(arg) for arg in args)]
    chunks: tuple[list[bytes], list[bytes]] = ([], [])

    async def drain(stream: ByteReceiveStream | None, into: list[bytes]) -> None:
        assert stream is not None
        async for chunk in stream:
            into.append(chunk)

    process = await anyio.open_process(
        argv, cwd=REPOSITORY, env={**os.environ, **env}, stdin=subprocess.DEVNULL, start_new_session=True
    )
    async with process:
        with anyio.move_on_after(deadline) as waiting:
            async with anyio.create_task_group() as readers:
                readers.start_soon(drain, process.stdout, chunks[0])
                readers.start_soon(drain, process.stderr, chunks[1])
                await process.wait()
        if waiting.cancelled_caught:
            with anyio.CancelScope(shield=True):
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
    stdout, stderr = (b"".join(parts).decode(errors="replace") for parts in chunks)
    assert process.returncode is not None
    finished = Finished(argv, process.returncode, stdout, stderr)
    if waiting.cancelled_caught:
        raise AssertionError(f"did not finish within {deadline} s: {finished}")
    return finished
