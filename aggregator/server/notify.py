"""Telling connected callers that what they can see has changed.

Legacy (2025-11-25) sessions get `notifications/{tools,prompts,resources}/list_changed` on their
standalone stream, but only when their own visible set changed; 2026-07-28 callers get the same
events on their `subscriptions/listen` streams (through the SDK's subscription bus).
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    PromptsListChanged,
    ResourcesListChanged,
    ServerEvent,
    ToolsListChanged,
)

from aggregator.policy.principal import AuthMethod, Principal

logger = logging.getLogger(__name__)

Fingerprints = tuple[str, str, str]
"""Hashes of what one principal sees: (tools, prompts, resources)."""


@dataclass(slots=True)
class _Watcher:
    principal: Principal
    seen: Fingerprints


@dataclass
class Notifier:
    """Remembers the legacy sessions and sends each the list changes that concern it."""

    fingerprint: Callable[[Principal], Fingerprints]
    after_change: Callable[[], Awaitable[None]] | None = None
    bus: InMemorySubscriptionBus = field(default_factory=InMemorySubscriptionBus)
    _sessions: weakref.WeakKeyDictionary[Connection, _Watcher] = field(default_factory=weakref.WeakKeyDictionary)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def watch(self, connection: Connection, principal: Principal) -> None:
        """Remember a legacy session (and who it is) the first time it makes a request."""
        if connection not in self._sessions:
            self._sessions[connection] = _Watcher(principal, self.fingerprint(principal))

    def changed(self) -> None:
        """The catalog or the policy changed; the notifier works out who must hear about it."""
        self._changed.set()

    async def run(self) -> None:
        """Deliver notifications until cancelled (a task of the app's lifespan)."""
        last: Fingerprints | None = None
        while True:
            await self._changed.wait()
            self._changed = anyio.Event()
            overall = self.fingerprint(_EVERYONE)
            if last is not None:
                await self._publish(last, overall)
            last = overall
            for connection, watcher in list(self._sessions.items()):
                now = self.fingerprint(watcher.principal)
                if now != watcher.seen:
                    await self._notify(connection, watcher.seen, now)
                    watcher.seen = now
            if self.after_change is not None:
                await self.after_change()

    async def _publish(self, before: Fingerprints, after: Fingerprints) -> None:
        events: list[ServerEvent] = []
        if before[0] != after[0]:
            events.append(ToolsListChanged())
        if before[1] != after[1]:
            events.append(PromptsListChanged())
        if before[2] != after[2]:
            events.append(ResourcesListChanged())
        for event in events:
            await self.bus.publish(event)

    async def _notify(self, connection: Connection, before: Fingerprints, after: Fingerprints) -> None:
        try:
            if before[0] != after[0]:
                await connection.send_tool_list_changed()
            if before[1] != after[1]:
                await connection.send_prompt_list_changed()
            if before[2] != after[2]:
                await connection.send_resource_list_changed()
        except Exception as error:  # noqa: BLE001 - per-session boundary: a gone session must not stop the others
            logger.info("notify.session_gone", extra={"error": type(error).__name__})
            self._sessions.pop(connection, None)


def digest(names: list[Any]) -> str:
    """A short stable hash of a list of visible items."""
    return hashlib.sha256(repr(names).encode()).hexdigest()[:16]


_EVERYONE = Principal(subject="*", client_id="*", issuer="*", auth_method=AuthMethod.LOCAL, unrestricted=True)
"""Sees the whole catalog: 2026-07-28 listeners hear of any change (they re-list, filtered, themselves)."""
