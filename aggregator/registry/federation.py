"""Following registries: read each one every `refresh` seconds and run the servers it publishes.

`Federation` is an async context manager that owns the refresh loop. A refresh reads a
registry's whole list, selects what this gateway takes (`federation_select.select`), and applies
the merged servers (`federation_merge.merge`) in one `apply` call: followed servers are added,
updated and removed together, never one by one. A registry that cannot be read, or whose answer is
refused, keeps its last good list; its status says so (`stale`), with the reason, until it answers
well again. Nothing a registry answers is ever written to servers.yaml.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol

import anyio
from anyio.abc import TaskGroup

from aggregator.errors import GatewayError, UnknownNameError
from aggregator.registry.federation_answer import CheckUrl, Followed, Published, RegistryError
from aggregator.registry.federation_fetch import shown
from aggregator.registry.federation_merge import merge
from aggregator.registry.federation_select import AvailableServer, Following, select
from aggregator.registry.models import ServersFile

logger = logging.getLogger(__name__)

State = Literal["pending", "ok", "stale", "failing"]
"""pending: not read yet; ok: the last read was used; stale: it failed, the last good list stays; failing: no
good list yet."""
_IDLE = 3600.0  # with no registry configured, how long the loop waits for a change


class Reader(Protocol):
    """Reads a registry's published servers (`federation_fetch.RegistryReader`; tests may serve their own)."""

    async def read(self, name: str, registry: Followed) -> list[Published]: ...


@dataclass(slots=True)
class RegistryStatus:
    """What this gateway knows of one followed registry."""

    name: str
    settings: Followed
    state: State = "pending"
    following: Following = field(default_factory=Following)
    conflicts: tuple[str, ...] = ()
    last_attempt: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    due: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """The status as the admin tools and the CLI show it (the URL without credentials or query)."""
        return {
            "name": self.name,
            "url": shown(self.settings.url),
            "state": self.state,
            "refresh": self.settings.refresh,
            "last_attempt": self.last_attempt,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "followed": [
                {"name": name, "transport": spec.transport, "servers": list(self.following.members.get(name, ()))}
                for name, spec in self.following.upstreams.items()
            ],
            "available": sorted(self.following.available),
            "skipped": list(self.following.skipped),
            "conflicts": list(self.conflicts),
        }


class Federation:
    """The registries a gateway follows, their last good lists, and the loop that refreshes them."""

    def __init__(
        self,
        configured: Callable[[], ServersFile],
        reader: Reader,
        check_url: CheckUrl,
        apply: Callable[[ServersFile], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._configured = configured
        self._reader = reader
        self._check_url = check_url
        self._apply = apply
        self._clock = clock
        self._statuses: dict[str, RegistryStatus] = {}
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        self._task_group: TaskGroup | None = None
        self._reconcile(configured())

    async def __aenter__(self) -> Federation:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._follow)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(exc_type, exc, traceback)

    def statuses(self) -> list[RegistryStatus]:
        """Every followed registry's status, by name."""
        return [self._statuses[name] for name in sorted(self._statuses)]

    def available(self) -> list[AvailableServer]:
        """Package-only servers of every registry: listed, never run."""
        return [server for status in self.statuses() for server in status.following.available.values()]

    def merged(self, local: ServersFile) -> ServersFile:
        """`local` (servers.yaml) with every registry's last good list merged in."""
        self._reconcile(local)
        result = merge(local, {name: status.following for name, status in self._statuses.items()})
        for name, status in self._statuses.items():
            status.conflicts = result.conflicts.get(name, ())
        return result.servers

    async def apply(self, local: ServersFile) -> None:
        """Run `local`'s servers and the followed ones (servers.yaml changed: `registries:` may have too)."""
        async with self._lock:
            await self._apply(self.merged(local))
        self._wake.set()  # a registry added to servers.yaml is read at once

    async def refresh(self, names: Iterable[str] | None = None) -> list[RegistryStatus]:
        """Read the named registries (default: all) now, then apply what they give in one step."""
        local = self._configured()
        self._reconcile(local)
        wanted = sorted(self._statuses) if names is None else list(names)
        for name in wanted:
            if name not in self._statuses:
                raise UnknownNameError("registry", name, sorted(self._statuses))
        async with self._lock:
            for name in wanted:
                await self._read(self._statuses[name])
            await self._apply(self.merged(self._configured()))
        return [self._statuses[name] for name in wanted]

    async def _read(self, status: RegistryStatus) -> None:
        status.last_attempt = self._clock()
        status.due = anyio.current_time() + status.settings.refresh
        try:
            with anyio.fail_after(status.settings.timeout * 4):
                published = await self._reader.read(status.name, status.settings)
            following = select(status.name, status.settings, published, self._check_url)
        except TimeoutError:
            self._failed(status, f"Registry '{status.name}' did not finish answering in time.")
        except RegistryError as error:
            self._failed(status, str(error))
        except GatewayError as error:  # its credential could not be had (client credentials, SigV4)
            self._failed(status, f"Registry '{status.name}': {error}")
        else:
            status.following = following
            status.state = "ok"
            status.last_success = status.last_attempt
            status.last_error = None
            logger.info(
                "federation.refreshed",
                extra={
                    "registry": status.name,
                    "followed": len(following.upstreams),
                    "available": len(following.available),
                },
            )

    def _failed(self, status: RegistryStatus, reason: str) -> None:
        status.state = "stale" if status.last_success is not None else "failing"
        status.last_error = reason
        logger.warning("federation.refresh_failed", extra={"registry": status.name, "error": reason})

    def _reconcile(self, local: ServersFile) -> None:
        """Start following registries new in servers.yaml, forget removed ones; a changed entry starts afresh."""
        for name in self._statuses.keys() - local.registries.keys():
            del self._statuses[name]
        for name, settings in local.registries.items():
            status = self._statuses.get(name)
            if status is None or status.settings != settings:
                self._statuses[name] = RegistryStatus(name, settings)

    async def _follow(self) -> None:
        """Refresh each registry when it is due; wake early when servers.yaml changes."""
        while True:
            self._reconcile(self._configured())
            now = anyio.current_time()
            due = [name for name, status in self._statuses.items() if status.due <= now]
            if due:
                try:
                    await self.refresh(due)
                except Exception:  # the loop's top level: log with the traceback, keep following
                    logger.exception("federation.loop_failed", extra={"registries": ",".join(due)})
            upcoming = [status.due for status in self._statuses.values()]
            delay = max(0.0, min(upcoming) - anyio.current_time()) if upcoming else _IDLE
            with anyio.move_on_after(delay):
                await self._wake.wait()
            self._wake = anyio.Event()
