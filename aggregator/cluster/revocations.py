"""Revocations every replica honours: each replica's revocation file, mirrored to one Redis set.

A revocation reaches Redis from the replica whose file got it (`mcp-aggregator token revoke` on
its host, or `revoke` here): added to the set (it persists) and published on the channel. Every
other replica hears it at once and writes it into its own file, where its token verifier, its
lean path's decision cache and the nginx decision cache's generation already look: nothing that
reads the file needs to know about Redis. After a reconnection the set and the file are merged
both ways, so revocations made during an outage, or published while a replica was away, arrive.
"""

from __future__ import annotations

import logging

import anyio
from redis.asyncio import Redis

from aggregator.cluster.client import REDIS_ERRORS
from aggregator.cluster.health import RedisHealth
from aggregator.errors import ConfigError
from aggregator.policy.revocation import RevocationList

logger = logging.getLogger(__name__)

MAX_TOKEN_ID_CHARACTERS = 512
"""Longer ids, or ids with control characters, read from Redis are dropped (and logged): no token has one."""


def plausible(jti: object) -> bool:
    """Whether a value read from Redis can be a token id at all."""
    return (
        isinstance(jti, str)
        and 0 < len(jti) <= MAX_TOKEN_ID_CHARACTERS
        and jti.isprintable()
        and not any(c.isspace() for c in jti)
    )


class SharedRevocations:
    """Keeps `local` (this replica's revocation file) and the shared Redis set equal."""

    def __init__(self, client: Redis, prefix: str, timeout: float, local: RevocationList, health: RedisHealth) -> None:
        self._client = client
        self.key = f"{prefix}revoked"
        self.channel = f"{prefix}revocations"
        self._timeout = timeout
        self._local = local
        self._health = health
        self._shared: set[str] = set()
        """Ids known to be in Redis already (pushed or heard): never pushed again."""
        self._changed: anyio.Event | None = None

    async def push(self) -> None:
        """Share the ids in the local file that Redis does not have yet (a new CLI revocation)."""
        new = self._local.snapshot() - self._shared
        if not new or not self._health.available:
            return
        try:
            with anyio.fail_after(self._timeout):
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.sadd(self.key, *new)
                    for jti in sorted(new):
                        pipe.publish(self.channel, jti)
                    await pipe.execute()
        except REDIS_ERRORS as error:
            self._health.down(error)
            return
        self._shared |= new
        logger.info("cluster.revocations_shared", extra={"count": len(new)})

    async def reconcile(self) -> None:
        """Merge the Redis set and the local file both ways (on every connection)."""
        with anyio.fail_after(self._timeout):
            members = await self._client.smembers(self.key)  # type: ignore[misc]
        remote = {member for member in members if isinstance(member, str)}
        await self._apply(remote)
        self._shared |= remote
        self._health.up()
        await self.push()

    async def heard(self, jti: object) -> None:
        """A revocation published by another replica."""
        await self._apply({jti} if isinstance(jti, str) else set())
        if plausible(jti):
            self._shared.add(str(jti))

    async def _apply(self, jtis: set[str]) -> None:
        accepted = {jti for jti in jtis if plausible(jti)}
        if len(accepted) < len(jtis):
            logger.warning("cluster.revocation_ignored", extra={"count": len(jtis) - len(accepted), "key": self.key})
        new = accepted - self._local.snapshot()
        if new:
            try:
                await anyio.to_thread.run_sync(self._local.revoke_all, new)
            except (ConfigError, OSError) as error:  # the verifier keeps its last good list meanwhile
                logger.error("cluster.revocations_not_written", extra={"count": len(new), "error": str(error)})
                return
            logger.info("cluster.revocations_applied", extra={"count": len(new)})
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_revoked(self, jti: str) -> None:
        """Return once `jti` is in this replica's revocation file."""
        while jti not in self._local.snapshot():
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    async def watch(self, interval: float) -> None:
        """Share what the CLI adds to the local file, every `interval` seconds (runs until cancelled)."""
        while True:
            await self.push()
            await anyio.sleep(interval)
