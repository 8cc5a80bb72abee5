"""A stdio upstream's child process: the command line it runs, what it says on stderr, how it ended.

Hosts such as Claude Desktop start the gateway in another working directory with a minimal PATH,
so a command line is resolved the same way wherever the gateway starts:

- `python` and `python3` run the gateway's own interpreter (`sys.executable`);
- a bare command that is not on the child's PATH is looked for next to that interpreter (the
  virtualenv's scripts, e.g. `mcp-server-time`);
- relative paths are taken from the servers file's folder: `cwd`, a command with a `/` in it, and
  (when `cwd` is not set) each argument that names an existing file or folder there.

An entry registered through a tool call (`registered_by`) keeps its arguments exactly as given.

The child's stderr goes through a pipe the gateway reads: each line is logged as `upstream.stderr`
with the upstream's name, and the last lines are kept for the error that says how the child ended
(`UpstreamProcessError`: the command line, the exit status, the last stderr lines). In both, the
values of the child's `env` and of the gateway's secret-looking variables are masked.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp.client.stdio import StdioServerParameters, stdio_client

from aggregator.errors import UpstreamProcessError
from aggregator.registry.models import StdioUpstream
from aggregator.sdk import TransportStreams, recording_spawns

logger = logging.getLogger(__name__)

PYTHON_COMMANDS = frozenset({"python", "python3"})
TAIL_LINES = 8
"""How many of the child's last stderr lines an error carries."""
RECENT_LINES = 12
"""How many of an upstream's latest stderr lines (over all its runs) operators are shown (`Upstream.recent_stderr`)."""
LINE_CHARS = 240
"""How much of each of those lines (a log line keeps up to `LOG_LINE_CHARS`)."""
LOG_LINE_CHARS = 2000
COMMAND_CHARS = 300
EXIT_WAIT = 1.0
"""Seconds a broken session waits for the child's exit status and its last stderr lines."""
MASK = "***"
MIN_MASKED = 4
"""Shorter values (`1`, `UTC`) are not masked: they cannot be secrets and would garble every line."""
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE|AUTH", re.IGNORECASE)
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True, slots=True)
class CommandLine:
    """What a stdio upstream runs, resolved for any working directory and PATH."""

    command: str
    args: tuple[str, ...]
    cwd: Path | None
    path: str
    """The PATH the child's command is looked up on (its `env`'s, else the gateway's)."""

    def shown(self, secrets: tuple[str, ...] = ()) -> str:
        """The command line as a shell would read it, masked and bounded, for messages."""
        text = mask(shlex.join((self.command, *self.args)), secrets)
        return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 3] + "..."


def command_line(spec: StdioUpstream, folder: Path | None, environ: Mapping[str, str] | None = None) -> CommandLine:
    """`spec`'s command line as the child runs it; relative paths are taken from `folder` (see the module)."""
    environ = os.environ if environ is None else environ
    path = spec.env.get("PATH", environ.get("PATH", os.defpath))
    cwd = spec.cwd if spec.cwd is None or folder is None else folder / spec.cwd
    anchor = folder if spec.cwd is None else None  # with a cwd, relative names are the child's to resolve
    command = spec.command
    interpreter = Path(sys.executable)
    if command in PYTHON_COMMANDS and sys.executable:
        command = sys.executable
    elif "/" in command:
        if anchor is not None and not Path(command).is_absolute():
            command = str(anchor / command)
    elif shutil.which(command, path=path) is None and (interpreter.parent / command).is_file():
        command = str(interpreter.parent / command)
    args = spec.args
    if anchor is not None and spec.registered_by is None:
        args = tuple(_anchored(arg, anchor) for arg in args)
    return CommandLine(command, args, cwd, path)


def _anchored(arg: str, folder: Path) -> str:
    if not arg or arg.startswith("-") or Path(arg).is_absolute() or not (folder / arg).exists():
        return arg
    return str(folder / arg)


def secrets_of(spec: StdioUpstream, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values never to show: the child's `env` values and the gateway's secret-looking variables."""
    environ = os.environ if environ is None else environ
    values = set(spec.env.values()) | {value for name, value in environ.items() if _SECRET_NAME.search(name)}
    return tuple(sorted((v for v in values if len(v) >= MIN_MASKED), key=len, reverse=True))


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every one of `secrets` replaced by `***` (longest first, so no part of one is left)."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def ending(returncode: int) -> str:
    """How a process with this `returncode` ended, in words."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = str(-returncode)
    return f"was killed by signal {name}"


class StdioChild:
    """One run of a stdio upstream's process: `running()` starts it and yields the session's streams."""

    def __init__(
        self, upstream: str, spec: StdioUpstream, folder: Path | None, recent: deque[str] | None = None
    ) -> None:
        self.upstream = upstream
        self.line = command_line(spec, folder)
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        """The child's last stderr lines (masked, each at most `LINE_CHARS`)."""
        self.recent: deque[str] = recent if recent is not None else deque(maxlen=RECENT_LINES)
        """The same lines, also kept where they outlive this run (the upstream's `recent_stderr`)."""
        self._env = dict(spec.env)
        self._secrets = secrets_of(spec)
        self._stderr_closed = anyio.Event()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TransportStreams]:
        """Start the child (the SDK's stdio client: leaving closes stdin, waits, kills its process tree).

        Raises `UpstreamProcessError` when it cannot start, and when the session breaks because the
        child ended on its own.
        """
        line = self.line
        parameters = StdioServerParameters(
            command=line.command, args=list(line.args), env=self._env or None, cwd=line.cwd
        )
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        async with AsyncExitStack() as stack:
            stack.callback(os.close, read_end)
            errlog = stack.enter_context(os.fdopen(write_end, "w", encoding="utf-8"))
            tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tasks.cancel_scope.cancel)  # after the child is gone: stop reading its stderr
            with recording_spawns() as spawned:
                try:
                    streams = await stack.enter_async_context(stdio_client(parameters, errlog=errlog))
                except OSError as error:
                    raise UpstreamProcessError(self.upstream, self._cannot_start(error)) from None
            errlog.close()  # the child holds its own copy: the pipe ends when the child (and its children) do
            tasks.start_soon(self._read_stderr, read_end)
            try:
                yield streams
            except Exception as error:
                if (ended := await self._ended(spawned)) is not None:
                    raise UpstreamProcessError(self.upstream, ended) from error
                raise

    async def _ended(self, spawned: list[Any]) -> str | None:
        """How the child ended, if it did on its own (its status, then its last stderr lines), or None."""
        if not spawned:
            return None
        process = spawned[0]
        with anyio.move_on_after(EXIT_WAIT):  # bounded: `wait()` also waits for pipes a grandchild may hold
            await process.wait()
            await self._stderr_closed.wait()
        if process.returncode is None:
            return None
        said = " | ".join(self.tail)
        heard = f"; its last stderr lines: {said}" if said else " (nothing on stderr)"
        return f"{self.line.shown(self._secrets)} {ending(process.returncode)}{heard}"

    def _cannot_start(self, error: OSError) -> str:
        line = self.line
        if isinstance(error, FileNotFoundError) and line.cwd is not None and not line.cwd.is_dir():
            reason = f"its working directory {line.cwd} does not exist"
        elif isinstance(error, FileNotFoundError) and "/" not in line.command:
            reason = (
                f"'{line.command}' is not on PATH ({line.path}) nor next to the gateway's interpreter "
                f"({Path(sys.executable).parent})"
            )
        elif isinstance(error, FileNotFoundError):
            reason = f"{line.command} does not exist"
        else:
            reason = error.strerror or str(error)
        return f"cannot start {line.shown(self._secrets)}: {mask(reason, self._secrets)}"

    async def _read_stderr(self, fd: int) -> None:
        """Log each line the child writes to stderr, keeping the last ones, until the pipe ends."""
        pending = b""
        try:
            while True:
                await anyio.wait_readable(fd)
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                if len(pending) > LOG_LINE_CHARS:  # a line without an end is logged in pieces
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    self._heard(line)
        except OSError:
            pass  # the pipe broke: nothing more to read
        finally:
            if pending:
                self._heard(pending)
            self._stderr_closed.set()

    def _heard(self, raw: bytes) -> None:
        text = _TERMINAL_CODES.sub("", raw.decode("utf-8", "replace"))
        text = mask("".join(char for char in text if char.isprintable() or char == "\t"), self._secrets).strip()
        if not text:
            return
        logger.info("upstream.stderr", extra={"upstream": self.upstream, "line": text[:LOG_LINE_CHARS]})
        shortened = text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 3] + "..."
        self.tail.append(shortened)
        self.recent.append(shortened)
