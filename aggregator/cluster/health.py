"""Whether this replica reaches Redis now: each change is logged once, waited on by tests, shown to operators."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio

logger = logging.getLogger(__name__)

MAX_ERROR_CHARACTERS = 200


class RedisHealth:
    """The last thing Redis did for this replica: answer (`available`) or fail (`error`).

    Every part that talks to Redis reports here; while Redis is unavailable they answer from local
    state without trying it, and the listener (`Cluster`) is the one that tries again.
    """

    def __init__(self, address: str, secret: str = "") -> None:
        self.address = address
        self._secret = secret
        self.available = False
        self.error: str | None = None
        self.since = time.time()
        self.transitions = 0
        self.fallbacks = 0
        """Decisions made from local state because Redis was unavailable."""
        self._known = False
        self._changed: anyio.Event | None = None  # made by the first waiter: no event loop may run yet

    def up(self) -> None:
        """Redis answered (after a failure, or for the first time)."""
        if self.available:
            return
        self._set(True, None)
        logger.info("cluster.redis_available", extra={"redis": self.address})

    def down(self, error: BaseException) -> None:
        """A Redis call failed or timed out: local state answers until the listener reconnects."""
        if not self.available and self._known:
            return
        text = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARACTERS]
        if self._secret:
            text = text.replace(self._secret, "***")
        self._set(False, text)
        logger.warning("cluster.redis_unavailable", extra={"redis": self.address, "error": text})

    def fell_back(self) -> None:
        """Count one decision made from local state (shown on /metrics)."""
        self.fallbacks += 1

    def _set(self, available: bool, error: str | None) -> None:
        self.available, self.error, self._known = available, error, True
        self.since = time.time()
        self.transitions += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait(self, available: bool) -> None:
        """Return once `available` is what it is."""
        while self.available is not available or not self._known:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def details(self) -> dict[str, Any]:
        """For /readyz: the address (never a password), the state and since when, the last error."""
        state = "connected" if self.available else ("unavailable" if self._known else "connecting")
        return {"redis": self.address, "state": state, "since": round(self.since, 3), "error": self.error}
