"""The console's link to the gateway: one session kept open, polled, and re-opened when it breaks.

`GatewayLink.run` never returns: it connects, reports the state, delivers a `Snapshot` every
`interval` seconds (or at once when `poll_now` is called), and when the connection fails it says
why, waits (exponential backoff, capped) and connects again. It knows nothing about Textual: the
app runs it in a worker and turns its reports into messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import anyio

from tui.client import GatewayClient, Refused, Target, Unreachable, describe_failure, is_transport_failure
from tui.models import Snapshot


class LinkStatus(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class LinkState:
    """Where the link stands, as the status bar shows it."""

    status: LinkStatus
    target: str
    detail: str = ""
    """The protocol era when connected; why the connection failed when lost."""
    attempt: int = 0
    retry_in: float | None = None
    reconnected: bool = False
    """Connected again after the connection had been lost."""


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
        """Poll (or, while disconnected, reconnect) now instead of at the next tick."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Connect, poll, reconnect; until cancelled."""
        self._wake = anyio.Event()
        attempt, connected_before = 0, False
        while True:
            if attempt == 0:  # while retrying, the status line keeps saying why and when the next try is
                self._on_state(LinkState(LinkStatus.CONNECTING, self.target.label))
            try:
                async with self.target.open() as session:
                    gateway = GatewayClient(session)
                    snapshot = await gateway.snapshot()
                    self._gateway = gateway
                    label, era = self.target.label, gateway.era
                    self._on_state(LinkState(LinkStatus.CONNECTED, label, era, reconnected=connected_before))
                    self._on_snapshot(snapshot)
                    attempt, connected_before = 0, True
                    await self._poll(gateway)
            except Exception as error:  # the connection's top level: transport failures mean "reconnect"
                if not (isinstance(error, Refused) or is_transport_failure(error)):
                    raise
                reason = describe_failure(error)
            finally:
                self._gateway = None
            attempt += 1
            delay = self._backoff.delay(attempt)
            self._on_state(LinkState(LinkStatus.LOST, self.target.label, reason, attempt, delay))
            await self._sleep(delay)

    async def _poll(self, gateway: GatewayClient) -> None:
        while True:
            await self._sleep(self._interval)
            self._on_snapshot(await gateway.snapshot())

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with anyio.move_on_after(seconds):
            await self._wake.wait()
        self._wake = anyio.Event()
