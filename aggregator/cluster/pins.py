"""Tool-definition pins shared by every replica: an approval or rejection made on one is applied by all.

Redis holds one hash (`<prefix>pins`) with a field per tool (`["server","tool"]`) whose value is
the tool's merged slice: its pinned, held and rejected definitions (`aggregator.trust.merge`).
Whatever changes this replica's pin store (its gate's decisions, an operator's verdict through an
admin tool or the CLI) is merged into those fields under WATCH, and the changed field's name is
published; every replica reads the field, checks it (shape, sizes, each definition against its
fingerprint; a record it refuses is logged and skipped) and merges it into its own pin store,
where the gate serves by it at once. Merging never lets a stale hold undo a verdict.

On every connection (and once before the upstreams connect, so a replica starting with an empty
pin store does not treat a server's listing as its first) the changes made while Redis was away
are pushed, every shared field is merged in, and tools Redis does not know (it restarted empty)
are pushed. Redis unavailable: the local pin store decides alone, as without a cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from redis.asyncio import Redis
from redis.exceptions import WatchError

from aggregator.cluster.client import REDIS_ERRORS
from aggregator.cluster.health import RedisHealth
from aggregator.trust.gate import Gate
from aggregator.trust.merge import Slice, changes, decode, encode, field_of, merge, put, slice_of
from aggregator.trust.store import Pins

logger = logging.getLogger(__name__)

ATTEMPTS = 8
"""Merges into one field retried when another replica wrote the hash in between (WATCH failed)."""


class SharedPins:
    """The pin store of this replica, kept merged with every other replica's through Redis."""

    def __init__(self, client: Redis, prefix: str, timeout: float, health: RedisHealth, gate: Gate) -> None:
        self._client = client
        self.key = f"{prefix}pins"
        self.channel = f"{prefix}pins-changed"
        self._timeout = timeout
        self._health = health
        self._gate = gate
        self._pending: dict[tuple[str, str], Slice] = {}
        self._wake = anyio.Event()
        self.applied = 0
        """Shared records merged into this replica's pin store."""
        self._merged: anyio.Event | None = None
        gate.on_written = self.written

    def written(self, before: Pins, after: Pins) -> None:
        """The pin store changed here: share what changed (in the background; nothing waits for Redis)."""
        for key, part in changes(before, after).items():
            self._pending[key] = {**self._pending.get(key, {}), **part}  # type: ignore[typeddict-item]
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
                (server, tool), part = next(iter(pending.items()))
                await self._merge_shared(field_of(server, tool), part)
                del pending[(server, tool)]
        except REDIS_ERRORS as error:
            for key, part in pending.items():  # a newer change made meanwhile goes on top
                self._pending[key] = {**part, **self._pending.get(key, {})}  # type: ignore[typeddict-item]
            self._health.down(error)

    async def _merge_shared(self, field: str, part: Slice) -> None:
        with anyio.fail_after(self._timeout * 4):
            async with self._client.pipeline(transaction=True) as pipe:
                for _ in range(ATTEMPTS):
                    try:
                        await pipe.watch(self.key)
                        base = self._parsed(field, str_or_none(await pipe.hget(self.key, field)))  # type: ignore[misc]
                        merged = merge(base, part)
                        if merged == base:
                            await pipe.unwatch()  # type: ignore[no-untyped-call]
                            return
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.hset(self.key, field, encode(merged))
                        pipe.publish(self.channel, field)
                        await pipe.execute()
                        return
                    except WatchError:
                        continue
        logger.warning("cluster.pins_not_shared", extra={"field": field[:200], "attempts": ATTEMPTS})

    async def heard(self, field: object) -> None:
        """A replica changed the shared record `field` (this one's own included: then nothing changes here)."""
        if not isinstance(field, str):
            return
        with anyio.fail_after(self._timeout):
            value = str_or_none(await self._client.hget(self.key, field))  # type: ignore[misc]
        if value is not None:
            self._apply({field: value})

    async def reconcile(self) -> None:
        """Push what changed while away, merge in every shared record, push what Redis does not know."""
        await self.push()
        with anyio.fail_after(self._timeout * 4):
            found = await self._client.hgetall(self.key)  # type: ignore[misc]
        shared = {str(field): str(value) for field, value in found.items()}
        self._apply(shared)
        for server, entry in self._gate.pins().items():
            for kind in ("pinned", "held", "rejected"):
                for tool in entry[kind]:  # type: ignore[literal-required]
                    if field_of(server, tool) not in shared:
                        self._pending[(server, tool)] = slice_of(self._gate.pins(), server, tool)
        await self.push()

    def _apply(self, shared: dict[str, str]) -> None:
        parts: list[tuple[str, str, Slice]] = []
        for field, value in shared.items():
            try:
                parts.append(decode(field, value))
            except ValueError as error:
                logger.error("cluster.pins_ignored", extra={"field": field[:200], "error": str(error)[:300]})
        pins = self._gate.pins()
        needed = [(s, t, part) for s, t, part in parts if merge(slice_of(pins, s, t), part) != slice_of(pins, s, t)]
        if not needed:
            return
        self._gate.merge(_merging(needed))
        self.applied += len(needed)
        for server, tool, _ in needed:
            logger.info("cluster.pins_applied", extra={"server": server, "tool": tool})
        if self._merged is not None:
            self._merged.set()
            self._merged = None

    async def wait_until(self, condition: Callable[[Pins], bool]) -> None:
        """Return once `condition(pins)` holds, testing it again each time shared records are merged here."""
        while not condition(self._gate.pins()):
            if self._merged is None:
                self._merged = anyio.Event()
            await self._merged.wait()

    def _parsed(self, field: str, value: str | None) -> Slice:
        if value is None:
            return {}
        try:
            return decode(field, value)[2]
        except ValueError as error:  # a forged or damaged record is replaced by this replica's decision
            logger.error("cluster.pins_ignored", extra={"field": field[:200], "error": str(error)[:300]})
            return {}


def str_or_none(value: object) -> str | None:
    """A reply of the client (which decodes responses) as the string it is."""
    return value if isinstance(value, str) else None


def _merging(parts: list[tuple[str, str, Slice]]) -> Callable[[Pins], None]:
    def change(pins: Pins) -> None:
        for server, tool, part in parts:
            put(pins, server, tool, merge(slice_of(pins, server, tool), part))

    return change
