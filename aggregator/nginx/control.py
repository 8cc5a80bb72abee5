"""One nginx instance: validate a config with `nginx -t`, install it atomically, signal a reload.

Everything here blocks (files, subprocesses): async callers run it in a worker thread. A config
that nginx rejects is never installed; it is kept beside the real one (`<config>.rejected`) so
the line numbers in nginx's message can be looked up.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from aggregator.errors import NginxError
from aggregator.nginx.render import NginxPaths

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT = 30.0


class NginxControl:
    """Validates, installs and reloads the config of the nginx running with `-p prefix -c config_file`."""

    def __init__(self, binary: str, paths: NginxPaths) -> None:
        self.binary = binary
        self.paths = paths

    def installed(self) -> str | None:
        """The text of the installed config, or None when there is none yet."""
        try:
            return self.paths.config_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def install(self, text: str) -> bool:
        """Validate `text` and atomically replace the installed config with it; False when it is unchanged.

        Raises `NginxError` (with nginx's explanation) when `nginx -t` refuses it; the installed
        config is then left as it was.
        """
        if self.installed() == text:
            return False
        for directory in self.paths.directories():
            directory.mkdir(parents=True, exist_ok=True)
        target = self.paths.config_file
        candidate = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        # The config may carry an upstream's own bearer token: readable by its owner only.
        descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        try:
            self._validate(candidate)
        except NginxError:
            os.replace(candidate, target.with_name(target.name + ".rejected"))
            raise
        os.replace(candidate, target)
        logger.info("nginx.installed", extra={"config": str(target)})
        return True

    def reload(self) -> None:
        """Ask the running nginx to load the installed config (`nginx -s reload`)."""
        if not self.is_running():
            raise NginxError(f"nginx is not running (no live process in {self.pid_file}); start it first.")
        result = self._run("-s", "reload", "-c", str(self.paths.config_file))
        if result.returncode != 0:
            raise NginxError(f"nginx could not be reloaded: {_message(result)}")

    @property
    def pid_file(self) -> Path:
        return self.paths.prefix / "run" / "nginx.pid"

    def is_running(self) -> bool:
        """Whether the pid file names a live process."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True

    def _validate(self, candidate: Path) -> None:
        result = self._run("-t", "-q", "-c", str(candidate))
        if result.returncode != 0:
            rejected = self.paths.config_file.name + ".rejected"
            message = _message(result).replace(str(candidate), str(candidate.with_name(rejected)))
            logger.error("nginx.rejected", extra={"config": str(self.paths.config_file), "error": message})
            raise NginxError(f"nginx -t rejected the rendered config; the running config is unchanged. {message}")

    def _run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [self.binary, "-p", f"{self.paths.prefix}/", *arguments]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
        except FileNotFoundError:
            raise NginxError(f"nginx was not found ('{self.binary}'); install it (make setup does).") from None
        except subprocess.TimeoutExpired:
            raise NginxError(f"'{' '.join(command)}' did not finish within {COMMAND_TIMEOUT:g} s.") from None


def _message(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    return " ".join(lines) or f"exit status {result.returncode}"
