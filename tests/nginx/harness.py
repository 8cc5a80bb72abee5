"""A real nginx for tests: loopback port, temp prefix, foreground master, its log lines on stderr."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aggregator.config.settings import Settings
from aggregator.nginx import NginxPaths
from tests.commands import Ran, run_command_in_thread
from tests.conftest import REPOSITORY, STARTUP_DEADLINE
from tests.harness import free_port as free_port  # nginx cannot report the port it bound
from tests.processes import RunningProcess, run_process

requires_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make setup)")
RELOAD_DEADLINE = 30.0

SCOPES = """
echo/call:
- server: echo
  methods: [tools/list, tools/call]
  tools: [echo, add, slow]
- server: echo-sse
  methods: [tools/list, tools/call]
  tools: [echo, slow]
echo/fail:
- server: echo
  methods: [tools/call]
  tools: [fail]
who/call:
- server: who
  methods: [tools/list, tools/call]
  tools: [whoami]
- server: who-token
  methods: [tools/list, tools/call]
  tools: [whoami]
aggregate/all:
- server: "*"
  methods: [tools/list, tools/call]
  tools: ["*"]
weather/only:
- server: weather
  methods: [tools/call]
  tools: ["*"]
"""
"""The passthrough tests' policy: echo (streamable HTTP and SSE), who (identity headers), everything, weather."""


def nginx_settings(port: int, **overrides: Any) -> dict[str, Any]:
    """The `nginx` section of a test gateway.yaml: one worker, on loopback, workers as root when we are."""
    return {
        "listen": f"127.0.0.1:{port}",
        "worker_processes": 1,
        "reload_debounce": 0.3,
        **({"user": "root"} if os.geteuid() == 0 else {}),
        **overrides,
    }


async def nginx_command(action: str, config: Path, env: dict[str, str] | None = None) -> Ran:
    """Run `mcp-aggregator nginx <action> --config <config>` (render, reload) to completion, in-process."""
    return await run_command_in_thread("nginx", action, "--config", str(config), environment=env)


@dataclass
class RunningNginx:
    """A started nginx: its base URL and its master process (whose output holds the error log)."""

    url: str
    process: RunningProcess
    error_log: Path

    async def wait_reloaded(self, mark: int) -> None:
        """Wait until the reload signalled after output line `mark` is done: new worker up, old one gone."""
        await self.process.wait_for(re.compile(r"start worker process"), RELOAD_DEADLINE, mark)
        await self.process.wait_for(re.compile(r"worker process \d+ exited with code 0"), RELOAD_DEADLINE, mark)

    def problems(self) -> list[str]:
        """Error-log lines of severity emerg, alert or crit (a failed reload shows up here)."""
        return [line for line in self.error_log.read_text().splitlines() if re.search(r"\[(emerg|alert|crit)\]", line)]


@asynccontextmanager
async def running_nginx(settings: Settings) -> AsyncIterator[RunningNginx]:
    """Run nginx in the foreground on the installed config (`nginx -p PREFIX -c CONF`); stop it after."""
    paths = NginxPaths.from_settings(settings)
    argv = [
        settings.nginx.binary,
        "-p",
        f"{paths.prefix}/",
        "-c",
        str(paths.config_file),
        "-g",
        "daemon off; error_log stderr notice;",
    ]
    async with run_process(argv, cwd=REPOSITORY) as process:
        await process.wait_for(re.compile(r"start worker process"), STARTUP_DEADLINE)
        yield RunningNginx(f"http://{settings.nginx.listen}", process, paths.prefix / "logs" / "error.log")
