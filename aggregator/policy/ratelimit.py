"""Per-principal rate limits (a token bucket per subject) and concurrency limits (slots per key)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aggregator.errors import ConcurrencyLimitError, RateLimitedError
from aggregator.policy.principal import Principal


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Allows `rate` requests per second per principal on average, with bursts up to `burst`."""

    def __init__(self, rate: float, burst: int, max_subjects: int = 100_000) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_subjects = max_subjects
        self._buckets: dict[str, _Bucket] = {}

    def check(self, principal: Principal, key: str = "") -> None:
        """Take one token for `principal` (and optional `key`, e.g. a tool); `RateLimitedError` if none is left."""
        if self._rate <= 0 or principal.unrestricted:
            return
        now = time.monotonic()
        name = f"{principal.issuer}|{principal.subject}|{key}"
        bucket = self._buckets.get(name)
        if bucket is None:
            if len(self._buckets) >= self._max_subjects:
                self._buckets.clear()  # bounded memory: an attacker minting subjects only resets buckets
            bucket = self._buckets[name] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens < 1:
            raise RateLimitedError(principal.describe(), (1 - bucket.tokens) / self._rate)
        bucket.tokens -= 1


class ConcurrencyLimiter:
    """At most `limit` requests in flight per key (a principal, an upstream); the next one fails fast."""

    def __init__(self, limit: int, what: str) -> None:
        self._limit = limit
        self._what = what
        self._in_flight: dict[str, int] = {}

    @contextmanager
    def slot(self, key: str, subject: str) -> Iterator[None]:
        """Hold one slot of `key` for the duration of the block; `ConcurrencyLimitError` when none is free."""
        count = self._in_flight.get(key, 0)
        if count >= self._limit:
            raise ConcurrencyLimitError(f"Too many concurrent calls {self._what} '{subject}' (limit {self._limit}).")
        self._in_flight[key] = count + 1
        try:
            yield
        finally:
            remaining = self._in_flight[key] - 1
            if remaining:
                self._in_flight[key] = remaining
            else:
                del self._in_flight[key]
