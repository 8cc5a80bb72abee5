"""Per-principal rate limits (a token bucket per subject) and concurrency limits (slots per key)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from aggregator.errors import ConcurrencyLimitError, RateLimitedError
from aggregator.policy.principal import Principal

BucketName = tuple[str, str, str]
"""(issuer, subject, key): whose budget; kept apart as a tuple, so no subject can spell another's name."""


class TokenBuckets(Protocol):
    """Where budgets are kept: this process's memory (`LocalBuckets`) or a store every replica shares
    (`aggregator.cluster.ratelimit.RedisBuckets`). Both answer the same question the same way."""

    async def take(self, name: BucketName, rate: float, burst: float) -> float:
        """Take one token from bucket `name` (refilled at `rate` per second up to `burst`, full when new):
        0 when taken, else the seconds until one is available."""
        ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class LocalBuckets:
    """Token buckets in this process's memory; bounded, so an attacker minting subjects only resets them."""

    def __init__(self, max_subjects: int = 100_000) -> None:
        self._max_subjects = max_subjects
        self._buckets: dict[BucketName, _Bucket] = {}

    def take_now(self, name: BucketName, rate: float, burst: float) -> float:
        """`take`, for callers that cannot wait (never blocks)."""
        now = time.monotonic()
        bucket = self._buckets.get(name)
        if bucket is None:
            if len(self._buckets) >= self._max_subjects:
                self._buckets.clear()
            bucket = self._buckets[name] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1:
            return (1 - bucket.tokens) / rate
        bucket.tokens -= 1
        return 0.0

    async def take(self, name: BucketName, rate: float, burst: float) -> float:
        return self.take_now(name, rate, burst)


class RateLimiter:
    """Allows `rate` requests per second per principal on average, with bursts up to `burst`.

    `admit` uses the buckets given (shared by every replica when `cluster.redis_url` is set);
    `check` is its synchronous form and always uses this process's own buckets.
    """

    def __init__(
        self, rate: float, burst: int, max_subjects: int = 100_000, buckets: TokenBuckets | None = None
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._local = LocalBuckets(max_subjects)
        self._buckets: TokenBuckets = buckets if buckets is not None else self._local

    async def admit(self, principal: Principal, key: str = "") -> None:
        """Take one token for `principal` (and optional `key`, e.g. a tool); `RateLimitedError` if none is left."""
        if self._rate <= 0 or principal.unrestricted:
            return
        wait = await self._buckets.take((principal.issuer, principal.subject, key), self._rate, self._burst)
        if wait > 0:
            raise RateLimitedError(principal.describe(), wait)

    def check(self, principal: Principal, key: str = "") -> None:
        """`admit` with this process's buckets, for synchronous callers."""
        if self._rate <= 0 or principal.unrestricted:
            return
        wait = self._local.take_now((principal.issuer, principal.subject, key), self._rate, self._burst)
        if wait > 0:
            raise RateLimitedError(principal.describe(), wait)


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
