"""The pins as records other replicas merge: what `aggregator.cluster.records` moves through Redis for the gate.

Each tool is one record, its field `["server","tool"]` and its value the tool's slice
(`aggregator.trust.merge`). Whatever changes this replica's pin store (its gate's decisions, an
operator's verdict through an admin tool or the CLI) is shared as the entries that changed; a
shared record is checked (shape, sizes, each definition against its fingerprint) before it is
merged into the pin store, where the gate serves by it at once. The gateway connects the two
(`share`), so neither package imports the other.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping

from aggregator.trust.gate import Gate
from aggregator.trust.merge import KINDS, Slice, changes, decode, encode, field_of, merge, put, slice_of
from aggregator.trust.store import Pins

logger = logging.getLogger(__name__)


class PinRecords:
    """The gate's pins, record by record, for `aggregator.cluster.records.SharedRecords` (its `Records`)."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self.share: Callable[[Mapping[str, str]], None] = lambda parts: None
        """Where changed records go (the cluster's `SharedRecords.written`); set by the gateway."""
        self.applied = 0
        """Shared records merged into this replica's pin store."""
        gate.on_written = self._written

    def _written(self, before: Pins, after: Pins) -> None:
        parts = {field_of(server, tool): encode(part) for (server, tool), part in changes(before, after).items()}
        if parts:
            self.share(parts)

    def merged(self, field: str, base: str | None, incoming: str) -> str | None:
        shared = self._checked(field, base) if base is not None else {}
        ours = self._checked(field, incoming)
        if shared is None or ours is None:  # a damaged record is replaced; a damaged change of ours is dropped
            return encode(ours) if ours is not None else None
        result = merge(shared, ours)
        return None if result == shared else encode(result)

    def combined(self, earlier: str, later: str) -> str:
        return encode({**json.loads(earlier), **json.loads(later)})  # type: ignore[typeddict-item]

    def apply(self, shared: Mapping[str, str]) -> None:
        parts: list[tuple[str, str, Slice]] = []
        for field, value in shared.items():
            try:
                parts.append(decode(field, value))
            except ValueError as error:
                logger.error("trust.shared_pins_ignored", extra={"field": field[:200], "error": str(error)[:300]})
        pins = self._gate.pins()
        needed = [(s, t, part) for s, t, part in parts if merge(slice_of(pins, s, t), part) != slice_of(pins, s, t)]
        if not needed:
            return
        self._gate.merge(_merging(needed))
        self.applied += len(needed)
        for server, tool, _ in needed:
            logger.info("trust.shared_pins_applied", extra={"server": server, "tool": tool})

    def missing(self, known: Collection[str]) -> dict[str, str]:
        pins = self._gate.pins()
        tools = {(server, tool) for server, entry in pins.items() for kind in KINDS for tool in entry[kind]}  # type: ignore[literal-required]
        fields = {(server, tool): field_of(server, tool) for server, tool in tools}
        return {field: encode(slice_of(pins, *tool)) for tool, field in fields.items() if field not in known}

    def _checked(self, field: str, value: str) -> Slice | None:
        try:
            return decode(field, value)[2]
        except ValueError as error:
            logger.error("trust.shared_pins_ignored", extra={"field": field[:200], "error": str(error)[:300]})
            return None


def _merging(parts: list[tuple[str, str, Slice]]) -> Callable[[Pins], None]:
    def change(pins: Pins) -> None:
        for server, tool, part in parts:
            put(pins, server, tool, merge(slice_of(pins, server, tool), part))

    return change
