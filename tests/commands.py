"""`mcp-aggregator` commands for tests: in this process (`main()`), or as a child process where the process is tested.

A command run in-process gets what a child would: its own stdout and stderr (captured), the
environment given, and the logging it configures for itself, which is undone afterwards so the
next test's log capture is untouched. It runs in a worker thread, since the command runs its own
event loop (`anyio.run`).
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import NamedTuple

import anyio

from aggregator.cli.common import TOKEN_VARIABLE
from aggregator.cli.main import main
from tests.conftest import REPOSITORY

PROCESS_DEADLINE = 240.0
"""Seconds a command run as a process may take (a model load on two busy cores)."""


class Ran(NamedTuple):
    """How a command ended: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_command(*args: str, environment: Mapping[str, str] | None = None) -> Ran:
    """`mcp-aggregator ARGS` in this process, with `environment` added to os.environ (and no caller token).

    It runs in a thread of its own: the command starts its own event loop, which the thread of a
    test that shares the session's loop (anyio's pytest plugin) may not.
    """
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(_run, args, environment or {}).result()


async def run_command_in_thread(*args: str, environment: Mapping[str, str] | None = None) -> Ran:
    """`run_command` from an async test: in a worker thread, while the test's loop keeps serving."""
    return await anyio.to_thread.run_sync(_run, args, environment or {})


async def run_command_process(*args: str, environment: Mapping[str, str] | None = None) -> Ran:
    """`python -m aggregator ARGS` as a child process, for tests about what the process does (and no caller token)."""
    env = {key: value for key, value in os.environ.items() if key != TOKEN_VARIABLE}
    env.update(environment or {})
    with anyio.fail_after(PROCESS_DEADLINE):
        done = await anyio.run_process(
            [sys.executable, "-m", "aggregator", *args], cwd=REPOSITORY, env=env, check=False
        )
    return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())


def _run(args: Sequence[str], environment: Mapping[str, str]) -> Ran:
    stdout, stderr = io.StringIO(), io.StringIO()
    with _environment(environment), _own_logging(), redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            status = main(list(args))
        except SystemExit as stopped:  # argparse refusing the arguments
            status = stopped.code if isinstance(stopped.code, int) else 2
    return Ran(status, stdout.getvalue(), stderr.getvalue())


@contextmanager
def _environment(added: Mapping[str, str]) -> Iterator[None]:
    changed = {TOKEN_VARIABLE, *added}
    saved = {key: os.environ.get(key) for key in changed}
    os.environ.pop(TOKEN_VARIABLE, None)
    os.environ.update(added)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _own_logging() -> Iterator[None]:
    """Undo what a command's `configure_logging` does: root handlers and level, and every logger's level."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {logger: logger.level for logger in _loggers()}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for logger in _loggers():
            logger.setLevel(levels.get(logger, logging.NOTSET))  # a logger the command created: as it was born


def _loggers() -> list[logging.Logger]:
    """Every logger there is now (a copy: other threads may create loggers meanwhile)."""
    return [logger for logger in list(logging.root.manager.loggerDict.values()) if isinstance(logger, logging.Logger)]
