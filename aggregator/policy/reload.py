"""The live policy: scopes.yml read at start and re-read when it changes; a broken edit keeps the last good one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import anyio

from aggregator.config.files import stamp
from aggregator.errors import ConfigError
from aggregator.policy.scopes import Policy, describe, empty_policy, load_scopes

logger = logging.getLogger(__name__)


class PolicyHolder:
    """Holds the current `Policy`; `watch()` swaps in a new one whenever the file's contents change."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.error: str | None = None
        self._stamp: tuple[int, int] | None = None
        self.current = empty_policy() if path is None else Policy(load_scopes(path))
        if path is not None:
            self._stamp = stamp(path)
            logger.info("policy.loaded", extra={"file": str(path), **describe(self.current.file)})

    async def watch(self, interval: float, on_change: Callable[[], None]) -> None:
        """Poll the file every `interval` seconds (edits by rename or in place both show up)."""
        if self.path is None:
            return
        while True:
            await anyio.sleep(interval)
            if self.reload_if_changed():
                on_change()

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed; return whether a new policy is in force."""
        assert self.path is not None
        current = stamp(self.path)
        if current == self._stamp:
            return False
        self._stamp = current
        try:
            policy = Policy(load_scopes(self.path))
        except ConfigError as error:
            self.error = str(error)
            logger.error("policy.reload_failed", extra={"file": str(self.path), "error": str(error)})
            return False
        self.current = policy
        self.error = None
        logger.info("policy.reloaded", extra={"file": str(self.path), **describe(policy.file)})
        return True
