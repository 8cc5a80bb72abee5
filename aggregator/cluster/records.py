"""A Redis hash of records every replica merges into its own state, field by field (the tool-definition pins).

What a record means, how two combine and how one is applied belong to its owner (`Records`: for
pins, `aggregator.trust.sharing`); this module only moves them. A change made here (`written`)
is merged into its field under WATCH (retried when another replica wrote the hash meanwhile) and
the field's name is published; every replica reads the field and applies it. On every connection
the changes made while Redis was away are pushed, every field is applied, and what Redis does not
know (it restarted empty) is pushed. Redis unavailable: local state decides alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

import anyio
from redis.asyncio import Redis
from redis.exceptions import WatchError

from aggregator.cluster.client import REDIS_ERRORS
from aggregator.cluster.health import RedisHealth

logger = logging.getLogger(__name__)

ATTEMPTS = 8
"""Merges into one field retried when another replica wrote the hash in between (WATCH failed)."""


class Records(Protocol):
    """The owner of one kind of shared record: it merges, combines and applies them (strings, by field)."""

    def merged(self, field: str, base: str | None, incoming: str) -> str | None:
        """The record `base` (None: none yet) with `incoming`'s changes; None when that changes nothing."""

    def combined(self, earlier: str, later: str) -> str:
        """Two changes of one field not yet shared, as one."""

    def apply(self, shared: Mapping[str, str]) -> None:
        """Merge shared records (checked first: a record refused is logged and skipped) into local state."""

    def missing(self, known: Collection[str]) -> dict[str, str]:
        """This replica's records whose fields are not in `known`."""


def str_or_none(value: object) -> str | None:
    """A reply of the client (which decodes responses) as the string it is."""
    return value if isinstance(value, str) else None


class SharedRecords:
    """One hash (`<prefix><name>`) and its channel (`<prefix><name>-changed`), kept merged with `records`."""

    def __init__(
        self, client: Redis, prefix: str, name: str, timeout: float, health: RedisHealth, records: Records
    ) -> None:
        self._client = client
        self.key = f"{prefix}{name}"
        self.channel = f"{prefix}{name}-changed"
        self._timeout = timeout
        self._health = health
        self._records = records
        self._pending: dict[str, str] = {}
        self._wake = anyio.Event()
        self._applied: anyio.Event | None = None

    def written(self, parts: Mapping[str, str]) -> None:
        """Records changed here: share them (in the background; nothing waits for Redis)."""
        for field, value in parts.items():
            earlier = self._pending.get(field)
            self._pending[field] = value if earlier is None else self._records.combined(earlier, value)
        if self._pending:
            self._wake.set()

    async def run(self) -> None:
        """Push each local change as it is made (runs until cancelled)."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.push()

    async def push(self) -> None:
        """Merge the pending changes into Redis, if Redis answers; what fails stays pending."""
        if not self._pending or not self._health.available:
            return
        pending, self._pending = self._pending, {}
        try:
            while pending:
                field, value = next(iter(pending.items()))
                await self._merge(field, value)
                del pending[field]
        except REDIS_ERRORS as error:
            for field, value in pending.items():  # a newer change made meanwhile goes on top
                later = self._pending.get(field)
                self._pending[field] = value if later is None else self._records.combined(value, later)
            self._health.down(error)

    async def _merge(self, field: str, value: str) -> None:
        with anyio.fail_after(self._timeout * 4):
            async with self._client.pipeline(transaction=True) as pipe:
                for _ in range(ATTEMPTS):
                    try:
                        await pipe.watch(self.key)
                        base = str_or_none(await pipe.hget(self.key, field))  # type: ignore[misc]
                        merged = self._records.merged(field, base, value)
                        if merged is None:
                            await pipe.unwatch()  # type: ignore[no-untyped-call]
                            return
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.hset(self.key, field, merged)
                        pipe.publish(self.channel, field)
                        await pipe.execute()
                        return
                    except WatchError:
                        continue
        logger.warning("cluster.record_not_shared", extra={"key": self.key, "field": field[:200]})

    async def heard(self, field: object) -> None:
        """A replica changed the record `field` (this one's own included: then nothing changes here)."""
        if not isinstance(field, str):
            return
        with anyio.fail_after(self._timeout):
            value = str_or_none(await self._client.hget(self.key, field))  # type: ignore[misc]
        if value is not None:
            self._apply({field: value})

    async def reconcile(self) -> None:
        """Push what changed while away, apply every shared record, push what Redis does not know."""
        await self.push()
        with anyio.fail_after(self._timeout * 4):
            found = await self._client.hgetall(self.key)  # type: ignore[misc]
        shared = {str(field): str(value) for field, value in found.items()}
        self._apply(shared)
        self.written(self._records.missing(shared.keys()))
        await self.push()

    def _apply(self, shared: Mapping[str, str]) -> None:
        self._records.apply(shared)
        if self._applied is not None:
            self._applied.set()
            self._applied = None

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds, testing it again each time shared records are applied here."""
        while not condition():
            if self._applied is None:
                self._applied = anyio.Event()
            await self._applied.wait()
