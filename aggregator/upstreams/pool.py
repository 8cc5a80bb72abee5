"""All upstreams of one gateway, connected concurrently and owned by one task group."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType

import anyio
from anyio.abc import TaskGroup, TaskStatus

from aggregator.errors import UnknownNameError
from aggregator.policy.addresses import AddressPolicy
from aggregator.policy.principal import Principal
from aggregator.registry.models import AnyUpstream, ServersFile, StdioUpstream
from aggregator.upstreams.credentials import UpstreamAuth
from aggregator.upstreams.state import Timings, UpstreamState
from aggregator.upstreams.upstream import Upstream

logger = logging.getLogger(__name__)


class UpstreamPool:
    """Connects every enabled upstream at once; one slow or dead upstream delays no other.

    Used as an async context manager: entering starts the connections in the background (it
    does not wait for them; `settle()` does), leaving closes every session and reaps every stdio
    child. `folder` is the servers file's folder: relative paths of stdio servers are taken from it.
    """

    def __init__(
        self,
        servers: ServersFile,
        timings: Timings,
        on_change: Callable[[UpstreamPool], None] | None = None,
        scopes_of: Callable[[Principal], frozenset[str]] = lambda principal: principal.scopes,
        on_resource_updated: Callable[[Upstream, str], Awaitable[None]] | None = None,
        addresses: AddressPolicy | None = None,
        folder: Path | None = None,
    ) -> None:
        self._on_change = on_change
        self._folder = folder
        self._addresses = addresses
        self._timings = timings
        self._scopes_of = scopes_of
        self._on_resource_updated = on_resource_updated
        self._upstreams = {name: self._new(name, spec) for name, spec in servers.servers.items()}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._changed = anyio.Event()
        self._task_group: TaskGroup | None = None

    def _new(self, name: str, spec: AnyUpstream) -> Upstream:
        auth = _auth_for(name, spec, self._scopes_of)
        return Upstream(
            name,
            spec,
            self._timings,
            self._upstream_changed,
            auth,
            self._on_resource_updated,
            self._addresses,
            self._folder,
        )

    async def __aenter__(self) -> UpstreamPool:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        for upstream in self._upstreams.values():
            await self._task_group.start(self._supervise, upstream)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        # Each upstream's teardown is bounded by the SDK (stdio: close stdin, wait, kill the tree).
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(exc_type, exc_value, traceback)

    async def _supervise(self, upstream: Upstream, *, task_status: TaskStatus[None]) -> None:
        with anyio.CancelScope() as scope:
            self._scopes[upstream.name] = scope
            task_status.started()
            await upstream.run()

    async def apply(self, servers: ServersFile) -> None:
        """Make the running upstreams match `servers`: start new ones, stop removed ones, restart changed ones."""
        assert self._task_group is not None
        current = self._upstreams
        updated: dict[str, Upstream] = {}
        for name, spec in servers.servers.items():
            existing = current.get(name)
            if existing is not None and existing.spec == spec:
                updated[name] = existing
                continue
            if existing is not None:
                self._stop(name)
            updated[name] = self._new(name, spec)
            logger.info("upstream.added" if existing is None else "upstream.reconfigured", extra={"upstream": name})
        for name in current.keys() - updated.keys():
            self._stop(name)
            logger.info("upstream.removed", extra={"upstream": name})
        self._upstreams = updated
        for name, upstream in updated.items():
            if current.get(name) is not upstream:
                await self._task_group.start(self._supervise, upstream)
        self._upstream_changed(None)

    def _stop(self, name: str) -> None:
        scope = self._scopes.pop(name, None)
        if scope is not None:
            scope.cancel()

    def __iter__(self) -> Iterator[Upstream]:
        return iter(self._upstreams.values())

    def get(self, name: str) -> Upstream:
        """The upstream registered as `name`."""
        try:
            return self._upstreams[name]
        except KeyError:
            raise UnknownNameError("server", name, []) from None

    def _upstream_changed(self, upstream: Upstream | None) -> None:
        if self._on_change is not None:
            self._on_change(self)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_until(self, condition: Callable[[UpstreamPool], bool]) -> None:
        """Return once `condition(pool)` holds, re-checking it on every upstream change."""
        while not condition(self):
            await self._changed.wait()

    async def settle(self) -> None:
        """Return once every upstream's first connection attempt has settled (connected or failed), or after
        `connect_timeout` at most: hosts list tools right after connecting and may never ask again."""
        with anyio.move_on_after(self._timings.connect_timeout):
            await self.wait_until(UpstreamPool.all_settled)

    def all_settled(self) -> bool:
        """Whether every enabled upstream has finished its first connection attempt, either way."""
        return all(u.state is not UpstreamState.CONNECTING for u in self)

    def required_connected(self) -> bool:
        """Whether every enabled upstream the operator marked `required: true` has a live session.

        Only the operator's entries count: a server registered through a tool call never decides readiness.
        """
        return all(
            u.state in (UpstreamState.HEALTHY, UpstreamState.DEGRADED)
            for u in self
            if u.spec.required and u.spec.enabled and u.spec.registered_by is None
        )

    def all_connected(self) -> bool:
        """Whether every enabled upstream has a live session."""
        return all(u.state in (UpstreamState.HEALTHY, UpstreamState.DEGRADED, UpstreamState.DISABLED) for u in self)


def _auth_for(
    name: str,
    spec: AnyUpstream,
    scopes_of: Callable[[Principal], frozenset[str]],
) -> UpstreamAuth | None:
    if isinstance(spec, StdioUpstream) or (spec.auth is None and not spec.identity_headers):
        return None
    return UpstreamAuth(name, spec.auth, spec.identity_headers, scopes_of)
