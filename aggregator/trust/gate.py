"""The hold decision: which of an upstream's tools the gateway serves, given the pins and `on_change`.

For each tool of a listing (`Gate.admit`, called by the catalog on every rebuild):

    pinned definition, same fingerprint       served
    held or rejected, same fingerprint        not served (already decided: nothing new is audited)
    new or changed, and the scanner flags it  held, whatever on_change says
    the server's very first listing           pinned (its first approval) and served
    new or changed, on_change: hold           held until an operator approves it
    new or changed, on_change: warn           pinned and served, with a warning and an alert
    new or changed, on_change: accept         pinned and served

Each decision other than "served" is written to the pin store, audited, logged and counted. A
held tool is left out of the catalog, so callers see it exactly like a tool that does not exist.
Approvals made elsewhere (`mcp-aggregator tools approve`, another process on the same data_dir) reach
a running gateway through `watch`, which re-reads the pin store whenever its stamp changes; another
replica's decisions arrive through `merge` (`aggregator.trust.sharing`), and `on_written` tells that
replica's peers of this one's.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import mcp_types as types

from aggregator.errors import ConfigError
from aggregator.policy.audit import AuditLog
from aggregator.policy.principal import AuthMethod, Principal
from aggregator.registry.models import AnyUpstream
from aggregator.trust.definition import definition_of, fingerprint
from aggregator.trust.scanner import scan
from aggregator.trust.store import Held, Pin, Pins, PinStore, now, server_pins
from aggregator.trust.verdicts import Verdict, decide, transitions

logger = logging.getLogger(__name__)

OnChange = Literal["hold", "warn", "accept"]
Action = Literal["pinned", "held", "warned", "accepted", "approved", "rejected"]
GATEWAY = Principal(subject="gateway", client_id="gateway", issuer="gateway", auth_method=AuthMethod.LOCAL)
"""Who the audit log names for what the gateway decided by itself."""


def change_policy(spec: AnyUpstream) -> OnChange:
    """What happens to a changed or new tool of `spec`: its `on_change`, else hold for registered entries, else warn."""
    if spec.on_change is not None:
        return spec.on_change
    return "hold" if spec.registered_by is not None else "warn"


@dataclass(frozen=True, slots=True)
class Event:
    """One decision about one tool definition (what the audit log, the metrics and the alerts show)."""

    server: str
    tool: str
    change: Literal["new", "changed"]
    action: Action
    fingerprint: str
    findings: tuple[str, ...] = ()
    by: str = "gateway"

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "tool": self.tool,
            "change": self.change,
            "action": self.action,
            "fingerprint": self.fingerprint,
            "findings": list(self.findings),
            "by": self.by,
        }


class Gate:
    """The pins of one gateway, in memory and in the pin store; decides what each listing may serve."""

    def __init__(self, store: PinStore, audit: AuditLog) -> None:
        self.store = store
        self._audit = audit
        self._pins: Pins = store.read()
        self._stamp = store.stamp()
        self._generation = 0
        self._admitted: dict[str, tuple[int, tuple[types.Tool, ...], tuple[types.Tool, ...]]] = {}
        self.counts: Counter[tuple[str, str, str]] = Counter()
        """(server, change, action) -> how many times, for /metrics."""
        self.alerts: deque[Event] = deque(maxlen=50)
        """The latest changes served under `warn` and the latest holds, for gateway://health."""
        self.on_change: Callable[[], None] = lambda: None
        """Called after the pins changed (an approval, a rejection, a write by another process)."""
        self.on_written: Callable[[Pins, Pins], None] = lambda before, after: None
        """Called with the pins before and after each change made here or read from the pin store (not `merge`'s)."""
        self._missed = False  # another process wrote between our read and our write: rebuild at the next poll

    def admit(self, server: str, spec: AnyUpstream, tools: tuple[types.Tool, ...]) -> tuple[types.Tool, ...]:
        """The tools of `server`'s listing that may be served now; records every new decision."""
        cached = self._admitted.get(server)
        if cached is not None and cached[0] == self._generation and cached[1] is tools:
            return cached[2]
        served, events, writes = self._decide(server, spec, tools)
        if writes:
            self._write(writes)
        for event in events:
            self._record(event)
        if not self._missed:  # else `served` came from pins older than the store's: decide again soon
            self._admitted[server] = (self._generation, tools, served)
        return served

    def _decide(
        self, server: str, spec: AnyUpstream, tools: tuple[types.Tool, ...]
    ) -> tuple[tuple[types.Tool, ...], list[Event], list[Callable[[Pins], None]]]:
        entry = self._pins.get(server)
        first = entry is None
        if entry is None:
            entry = {"pinned": {}, "held": {}, "rejected": {}}
        served: list[types.Tool] = []
        events: list[Event] = []
        writes: list[Callable[[Pins], None]] = []
        names = {tool.name for tool in tools}
        for gone in set(entry["held"]) - names if tools else ():  # (an upstream not connected yet lists nothing)
            writes.append(_drop_held(server, gone))
        for tool in tools:
            definition = definition_of(tool)
            print_ = fingerprint(definition)
            pinned = entry["pinned"].get(tool.name)
            if pinned is not None and pinned["fingerprint"] == print_:
                served.append(tool)
                continue
            decided = entry["held"].get(tool.name) or entry["rejected"].get(tool.name)
            if decided is not None and decided["fingerprint"] == print_:
                continue
            findings = scan(definition)
            change: Literal["new", "changed"] = "new" if pinned is None else "changed"
            mode = change_policy(spec)
            if findings or (not first and mode == "hold"):
                reason = "flagged by the scanner" if findings else f"{change} (on_change: hold)"
                held: Held = {
                    "fingerprint": print_,
                    "definition": definition,
                    "reason": reason,
                    "findings": [finding.as_json() for finding in findings],
                    "at": now(),
                }
                writes.append(_hold(server, tool.name, held))
                events.append(Event(server, tool.name, change, "held", print_, tuple(f.rule for f in findings)))
                continue
            action: Action = "pinned" if first else ("warned" if mode == "warn" else "accepted")
            pin: Pin = {"fingerprint": print_, "definition": definition, "by": f"gateway ({action})", "at": now()}
            writes.append(_pin(server, tool.name, pin))
            events.append(Event(server, tool.name, change, action, print_))
            served.append(tool)
        return tuple(served), events, writes

    def _write(self, writes: Iterable[Callable[[Pins], None]]) -> None:
        def apply(pins: Pins) -> Pins | None:
            external = copy.deepcopy(pins) if pins != self._pins else None
            for write in writes:
                write(pins)
            return external

        # Blocking, but only when a decision is new (rare), and the decision must be stored before it is served.
        external, pins = self.store.update(apply)
        if external is not None:
            self._count_verdicts(external)
            self._missed = True
        self.on_written(self._pins, pins)
        self._pins = pins
        self._stamp = self.store.stamp()
        self._generation += 1

    def _record(self, event: Event, principal: Principal = GATEWAY) -> None:
        self.counts[(event.server, event.change, event.action)] += 1
        fields = event.as_json()
        decision = "deny" if event.action in ("held", "rejected") else "allow"
        self._audit.record(principal, "tools/pin", event.tool, decision, upstream=event.server, **fields)
        if event.action in ("held", "warned"):
            self.alerts.append(event)
            log = logger.warning if event.action == "warned" or event.findings else logger.info
            log("trust.tool_definition_" + event.action, extra=fields)
        else:
            logger.info("trust.tool_definition_" + event.action, extra=fields)

    def pins(self) -> Pins:
        """The pins as this gateway last read or wrote them."""
        return self._pins

    def held_counts(self) -> dict[str, int]:
        """How many tools each server has held (held, not rejected), for /metrics and gateway://health."""
        return {server: len(entry["held"]) for server, entry in self._pins.items()}

    async def decide(
        self, verdict: Verdict, server: str, tool: str, principal: Principal, expected: str | None = None
    ) -> dict[str, Any]:
        """Approve or reject a held definition as `principal` (the admin tools); audited, served at once."""
        by = principal.describe()
        decided, pins = await anyio.to_thread.run_sync(decide, self.store, verdict, server, tool, by, expected)
        self._audit.record(principal, "tools/pin", tool, "allow", upstream=server, action=verdict, **decided)
        self.changed(pins)
        return decided

    def changed(self, pins: Pins, *, shared: bool = False) -> None:
        """Take `pins` as current (just written, or re-read) and let the catalog rebuild.

        `shared`: they came from another replica (`merge`), so they are not shared again.
        """
        self._count_verdicts(pins)
        if not shared:
            self.on_written(self._pins, pins)
        self._pins = pins
        self._stamp = self.store.stamp()
        self._generation += 1
        self.on_change()

    def _count_verdicts(self, pins: Pins) -> None:
        for server, tool, verdict in transitions(self._pins, pins):
            change = "changed" if tool in self._pins[server]["pinned"] else "new"
            self.counts[(server, change, verdict)] += 1
            logger.info("trust.tool_definition_" + verdict, extra={"server": server, "tool": tool})

    def merge(self, change: Callable[[Pins], None]) -> None:
        """Apply another replica's decisions (`change`) to the pin store, then serve by them.

        In the event loop like `_write`, so no decision of this replica's falls between the write and
        the pins this gateway holds; a write by another process found on the way is still shared.
        """

        def apply(pins: Pins) -> Pins | None:
            external = copy.deepcopy(pins) if pins != self._pins else None
            change(pins)
            return external

        external, pins = self.store.update(apply)
        if external is not None:
            self.on_written(self._pins, external)
        self.changed(pins, shared=True)

    async def watch(self, interval: float) -> None:
        """Re-read the pin store whenever another process writes it (its stamp is polled every `interval` s)."""
        while True:
            await anyio.sleep(interval)
            if self._missed:
                self._missed = False
                self._generation += 1
                self.on_change()
            current = self.store.stamp()
            if current == self._stamp:
                continue
            try:
                pins = await anyio.to_thread.run_sync(self.store.read)
            except ConfigError as error:
                self._stamp = current  # report a bad edit once; keep the last good pins
                logger.error("trust.pins_unreadable", extra={"error": str(error)})
                continue
            self.changed(pins)


def _hold(server: str, tool: str, held: Held) -> Callable[[Pins], None]:
    def write(pins: Pins) -> None:
        entry = server_pins(pins, server)
        entry["held"][tool] = held
        entry["rejected"].pop(tool, None)

    return write


def _pin(server: str, tool: str, pin: Pin) -> Callable[[Pins], None]:
    def write(pins: Pins) -> None:
        entry = server_pins(pins, server)
        entry["pinned"][tool] = pin
        entry["held"].pop(tool, None)
        entry["rejected"].pop(tool, None)

    return write


def _drop_held(server: str, tool: str) -> Callable[[Pins], None]:
    def write(pins: Pins) -> None:
        server_pins(pins, server)["held"].pop(tool, None)

    return write
