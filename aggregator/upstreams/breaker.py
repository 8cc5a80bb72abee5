"""A circuit breaker per upstream: after enough consecutive failures, callers fail fast for a while."""

from __future__ import annotations

import logging

import anyio

from aggregator.errors import UpstreamUnavailableError

logger = logging.getLogger(__name__)


class CircuitBreaker:
    """Counts consecutive failed requests to one upstream and opens after `threshold` of them.

    While open (for `cooldown` seconds) every request is refused at once instead of waiting on an
    upstream that is likely down; the next request after the cooldown is let through, and one
    success closes the circuit again.
    """

    def __init__(self, upstream: str, threshold: int, cooldown: float) -> None:
        self._upstream = upstream
        self._threshold = threshold
        self._cooldown = cooldown
        self._failures = 0
        self._open_until = 0.0

    @property
    def tripped(self) -> bool:
        """Whether the circuit is open now."""
        return anyio.current_time() < self._open_until

    def check(self) -> None:
        """Raise `UpstreamUnavailableError` while the circuit is open."""
        if (wait := self._open_until - anyio.current_time()) > 0:
            raise UpstreamUnavailableError(
                self._upstream,
                f"circuit open after {self._failures} consecutive failures; retrying in {wait:.0f} s",
            )

    def failed(self) -> bool:
        """Count one failure; True when this failure opened the circuit."""
        self._failures += 1
        if self._failures < self._threshold:
            return False
        self._open_until = anyio.current_time() + self._cooldown
        logger.warning("upstream.circuit_open", extra={"upstream": self._upstream, "failures": self._failures})
        return True

    def succeeded(self) -> None:
        """A request got an answer: the run of failures is over."""
        self._failures = 0
