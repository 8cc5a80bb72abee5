"""Token buckets in Redis: one budget per principal, whichever replica a call reaches.

One Lua script refills and takes atomically on the Redis server, with Redis's own clock, so
replicas never race and their clocks never matter. A bucket's key is the prefix and a SHA-256 of
the whole (issuer, subject, key) name: whatever a principal is called (Redis-special characters,
megabytes of it), its key has a fixed shape and cannot reach another's. A key expires once its
bucket would be full again, which is the same as having no key.
"""

from __future__ import annotations

import hashlib
import json
import math

import anyio
from redis.asyncio import Redis

from aggregator.cluster.client import REDIS_ERRORS
from aggregator.cluster.health import RedisHealth
from aggregator.policy.ratelimit import BucketName, LocalBuckets

TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', string.format('%.17g', now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return string.format('%.17g', wait)
"""


def bucket_key(prefix: str, name: BucketName) -> str:
    """The Redis key of bucket `name`: fixed length, whatever the name holds."""
    digest = hashlib.sha256(json.dumps(list(name)).encode("ascii")).hexdigest()
    return f"{prefix}rate:{digest}"


class RedisBuckets:
    """`TokenBuckets` kept in Redis; this replica's `LocalBuckets` answer while Redis is unavailable."""

    def __init__(self, client: Redis, prefix: str, timeout: float, health: RedisHealth) -> None:
        self._script = client.register_script(TAKE)
        self._prefix = prefix
        self._timeout = timeout
        self._health = health
        self._local = LocalBuckets()

    async def take(self, name: BucketName, rate: float, burst: float) -> float:
        if self._health.available:
            lifetime = max(1, math.ceil(burst / rate) + 1)
            try:
                with anyio.fail_after(self._timeout):
                    wait = await self._script(keys=[bucket_key(self._prefix, name)], args=[rate, burst, lifetime])
                return max(0.0, float(wait))
            except REDIS_ERRORS as error:
                self._health.down(error)
        self._health.fell_back()
        return self._local.take_now(name, rate, burst)
