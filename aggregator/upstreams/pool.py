"""All upstreams of one gateway, connected concurrently and owned by one task group."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from aggregator.config import ServersFile, SseUpstream, StdioUpstream, StreamableHttpUpstream
from aggregator.errors import UnknownNameError
from aggregator.policy.principal import Principal
from aggregator.upstreams.credentials import UpstreamAuth
from aggregator.upstreams.upstream import Timings, Upstream, UpstreamState

logger = logging.getLogger(__name__)


class UpstreamPool:
    """Connects every enabled upstream at once; one slow or dead upstream delays no other.

    Used as an async context manager: entering starts the connections in the background (it
    does not wait for them), leaving closes every session and reaps every stdio child.
    """

    def __init__(
        self,
        servers: ServersFile,
        timings: Timings,
        on_change: Callable[[UpstreamPool], None] | None = None,
        scopes_of: Callable[[Principal], frozenset[str]] = lambda principal: principal.scopes,
        on_resource_updated: Callable[[Upstream, str], Awaitable[None]] | None = None,
    ) -> None:
        self._on_change = on_change
        self._upstreams = {
            name: Upstream(
                name, spec, timings, self._upstream_changed, _auth_for(name, spec, scopes_of), on_resource_updated
            )
            for name, spec in servers.servers.items()
        }
        self._changed = anyio.Event()
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> UpstreamPool:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        for upstream in self._upstreams.values():
            self._task_group.start_soon(upstream.run, name=f"upstream:{upstream.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        # Each upstream's teardown is shielded and bounded (Upstream._connect_and_serve).
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(exc_type, exc_value, traceback)

    def __iter__(self) -> Iterator[Upstream]:
        return iter(self._upstreams.values())

    def get(self, name: str) -> Upstream:
        """The upstream registered as `name`."""
        try:
            return self._upstreams[name]
        except KeyError:
            raise UnknownNameError("server", name, []) from None

    def _upstream_changed(self, upstream: Upstream) -> None:
        if self._on_change is not None:
            self._on_change(self)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_until(self, condition: Callable[[UpstreamPool], bool]) -> None:
        """Return once `condition(pool)` holds, re-checking it on every upstream change."""
        while not condition(self):
            await self._changed.wait()

    def all_settled(self) -> bool:
        """Whether every enabled upstream has finished its first connection attempt, either way."""
        return all(u.state is not UpstreamState.CONNECTING for u in self)

    def all_connected(self) -> bool:
        """Whether every enabled upstream has a live session."""
        return all(u.state in (UpstreamState.HEALTHY, UpstreamState.DISABLED) for u in self)


def _auth_for(
    name: str,
    spec: StdioUpstream | StreamableHttpUpstream | SseUpstream,
    scopes_of: Callable[[Principal], frozenset[str]],
) -> UpstreamAuth | None:
    if isinstance(spec, StdioUpstream) or (spec.auth is None and not spec.identity_headers):
        return None
    return UpstreamAuth(name, spec.auth, spec.identity_headers, scopes_of)
