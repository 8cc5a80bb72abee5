"""The Redis client every shared part uses: short timeouts, no retries of its own (the listener retries)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from aggregator.config.cluster import ClusterSettings

REDIS_ERRORS = (RedisError, OSError, TimeoutError)
"""What a Redis call may raise when Redis is unreachable, slow or restarting (TimeoutError: our own deadline)."""


def connect(settings: ClusterSettings) -> Redis:
    """A client for `settings.redis_url` (no connection is made until it is used)."""
    assert settings.redis_url is not None
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        decode_responses=True,
        socket_timeout=settings.timeout,
        socket_connect_timeout=settings.timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
