"""The console's link to the gateway: one session kept open, polled, and re-opened when it breaks.

`GatewayLink.run` never returns: it connects, reports the state, and delivers `Snapshot`s. Where
the gateway offers `gateway://health`, the link follows it and re-reads servers and tools only when
the gateway says they changed (or `poll_now` is called); every `interval` seconds it reads just the
activity. Otherwise it polls everything every `interval` seconds. When the connection fails it says
why (a refused token is its own state: the operator must act), waits (exponential backoff,
capped) and connects again. It knows nothing about Textual: the app runs it in a worker and turns
its reports into messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

import anyio
import mcp_types as types
from mcp.client.session import IncomingMessage

from tui.client import GatewayClient, describe_failure, is_connection_failure
from tui.errors import TokenRejected, Unreachable
from tui.models import HEALTH_URI, Snapshot
from tui.target import Target


class LinkStatus(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"
    REJECTED = "rejected"
    """The gateway refused the token (expired, revoked): it will not come back by itself."""


@dataclass(frozen=True, slots=True)
class LinkState:
    """Where the link stands, as the status bar shows it."""

    status: LinkStatus
    target: str
    detail: str = ""
    """The protocol era when connected; why the connection failed when lost or rejected."""
    attempt: int = 0
    retry_in: float | None = None
    reconnected: bool = False
    """Connected again after the connection had been lost."""
    following: bool = False
    """Connected and told of changes by the gateway (`gateway://health`) instead of polling for them."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Seconds between reconnection attempts: `initial`, doubling up to `maximum`."""

    initial: float = 0.5
    maximum: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(0, attempt - 1)))


class GatewayLink:
    """Keeps the console connected to the gateway and its picture of it fresh."""

    def __init__(
        self,
        target: Target,
        on_state: Callable[[LinkState], None],
        on_snapshot: Callable[[Snapshot], None],
        interval: float = 3.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.target = target
        self._on_state = on_state
        self._on_snapshot = on_snapshot
        self._interval = interval
        self._backoff = backoff or Backoff()
        self._gateway: GatewayClient | None = None
        self._wake: anyio.Event | None = None
        self._stale = True
        """Servers and tools must be re-read at the next tick (a change was announced or requested)."""
        self._following = False
        self._reconnected = False
        self._snapshot = Snapshot()

    @property
    def gateway(self) -> GatewayClient:
        """The open session; `Unreachable` while there is none."""
        if self._gateway is None:
            raise Unreachable(f"Not connected to the gateway at {self.target.label}.")
        return self._gateway

    @property
    def connected(self) -> bool:
        return self._gateway is not None

    def poll_now(self) -> None:
        """Poll everything (or, while disconnected, reconnect) now instead of at the next tick."""
        self._stale = True
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Connect, poll, reconnect; until cancelled."""
        self._wake = anyio.Event()
        attempt, connected_before = 0, False
        while True:
            if attempt == 0:  # while retrying, the status line keeps saying why and when the next try is
                self._on_state(LinkState(LinkStatus.CONNECTING, self.target.label))
            status = LinkStatus.LOST
            try:
                async with self.target.open(self._notified) as session:
                    gateway = GatewayClient(session)
                    self._deliver(await gateway.snapshot())
                    self._gateway, self._reconnected = gateway, connected_before
                    self._connected()
                    attempt, connected_before = 0, True
                    async with anyio.create_task_group() as group:
                        group.start_soon(gateway.follow_health, self._changed, self._now_following)
                        await self._poll(gateway)
            except Exception as error:  # the connection's top level: failed sessions mean "reconnect"
                if not is_connection_failure(error):
                    raise
                if _rejection(error) is not None:
                    status = LinkStatus.REJECTED
                reason = describe_failure(_rejection(error) or error)
            finally:
                self._gateway = None
                self._following = False
            attempt += 1
            delay = self._backoff.delay(attempt) if status is LinkStatus.LOST else self._backoff.maximum
            self._on_state(LinkState(status, self.target.label, reason, attempt, delay))
            await self._sleep(delay)

    def _connected(self) -> None:
        assert self._gateway is not None
        label, era, again = self.target.label, self._gateway.era, self._reconnected
        self._on_state(LinkState(LinkStatus.CONNECTED, label, era, reconnected=again, following=self._following))

    def _deliver(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._on_snapshot(snapshot)

    async def _poll(self, gateway: GatewayClient) -> None:
        self._stale = False
        while True:
            await self._sleep(self._interval)
            if self._following and not self._stale:  # only the activity changes unannounced
                activity, reason = await gateway.activity(self._snapshot.abilities)
                self._deliver(replace(self._snapshot, activity=activity, activity_error=reason))
            else:
                self._stale = False
                self._deliver(await gateway.snapshot())

    def _changed(self) -> None:
        """The gateway announced a change of health or tools: re-read them now."""
        self.poll_now()

    def _now_following(self) -> None:
        self._following = True
        self._connected()

    async def _notified(self, message: IncomingMessage) -> None:
        """2025-11-25 notifications: `gateway://health` updated, or the tool list changed."""
        health = isinstance(message, types.ResourceUpdatedNotification) and message.params.uri == HEALTH_URI
        if health or isinstance(message, types.ToolListChangedNotification):
            self._changed()

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with anyio.move_on_after(seconds):
            await self._wake.wait()
        self._wake = anyio.Event()


def _rejection(error: BaseException) -> TokenRejected | None:
    """The refused token behind `error` (also inside a group), if that is what it is."""
    if isinstance(error, TokenRejected):
        return error
    if isinstance(error, BaseExceptionGroup):
        return next((found for inner in error.exceptions if (found := _rejection(inner)) is not None), None)
    return None
