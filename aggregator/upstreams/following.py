"""Following an upstream's resources for subscribed callers, and hearing of its list changes.

Callers' subscriptions are refcounted per upstream URI: the first follower subscribes upstream,
the last one to leave unsubscribes. A 2025-11-25 upstream is asked with `resources/subscribe`
(again after every reconnect, since it forgot); a 2026-07-28 upstream announces updates and list
changes only on a `subscriptions/listen` stream, which names the followed URIs and so is reopened
whenever that set changes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.subscriptions import SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from aggregator.upstreams.failures import CONNECTION_ERRORS, describe, leaf
from aggregator.upstreams.requests import EMPTY_RESULT, RequestPath

logger = logging.getLogger(__name__)


class ResourceFollowing:
    """The followed resources of one upstream and the stream that reports on them."""

    def __init__(
        self,
        upstream: str,
        requests: RequestPath,
        on_updated: Callable[[str], Awaitable[None]] | None,
        on_listing_changed: Callable[[], None],
    ) -> None:
        self._upstream = upstream
        self._requests = requests
        self._on_updated = on_updated
        self._on_listing_changed = on_listing_changed
        self._followed: dict[str, int] = {}
        self._reopen = anyio.Event()
        self.protocol_version: str | None = None
        """The era of the upstream's latest session (set by its lifecycle on every connect)."""

    async def follow(self, uri: str) -> None:
        """Start forwarding updates of the resource `uri` (refcounted across callers)."""
        self._followed[uri] = self._followed.get(uri, 0) + 1
        if self._followed[uri] == 1:
            await self._tell_upstream(uri, subscribe=True)

    async def unfollow(self, uri: str) -> None:
        """Stop forwarding updates of `uri` once no caller follows it any more."""
        count = self._followed.get(uri, 0) - 1
        if count > 0:
            self._followed[uri] = count
            return
        self._followed.pop(uri, None)
        await self._tell_upstream(uri, subscribe=False)

    async def updated(self, uri: str) -> None:
        """The upstream says `uri` changed: tell the followers, if there are any."""
        if self._on_updated is not None and uri in self._followed:
            await self._on_updated(uri)

    async def resubscribe(self) -> None:
        """A reconnected 2025-11-25 upstream forgot its subscriptions: ask again for each followed URI."""
        for uri in list(self._followed):
            await self._tell_upstream(uri, subscribe=True)

    async def listen(self, client: Client) -> None:
        """Follow a 2026-07-28 upstream's `subscriptions/listen` stream until it ends for good."""
        while True:
            self._reopen = anyio.Event()
            try:
                async with (
                    client.listen(
                        tools_list_changed=True,
                        prompts_list_changed=True,
                        resources_list_changed=True,
                        resource_subscriptions=sorted(self._followed),
                    ) as subscription,
                    anyio.create_task_group() as reopen,
                ):
                    reopen.start_soon(_cancel_when, self._reopen, reopen.cancel_scope)
                    # The stream replays nothing: a change made between the last listing and the ack is
                    # announced only here, by listing again.
                    self._on_listing_changed()
                    async for event in subscription:
                        if isinstance(event, ResourceUpdated):
                            await self.updated(event.uri)
                        else:
                            self._on_listing_changed()
                    reopen.cancel_scope.cancel()
            except Exception as error:  # the task group above wraps what the stream raised in a group
                if not isinstance(leaf(error), (MCPError, SubscriptionLost, *CONNECTION_ERRORS)):
                    raise
                logger.info("upstream.listen_ended", extra={"upstream": self._upstream, "error": describe(error)})
                self._on_listing_changed()  # probe now: if the upstream went away with the stream, reconnect
                return
            if not self._reopen.is_set():
                return  # the upstream closed the stream on purpose

    async def _tell_upstream(self, uri: str, *, subscribe: bool) -> None:
        if self.protocol_version in MODERN_PROTOCOL_VERSIONS:
            self._reopen.set()
            return
        if subscribe:
            request: types.ClientRequest = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
        else:
            request = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri))
        await self._requests.send(f"{request.method} '{uri}'", request, EMPTY_RESULT)


def advertises_changes(client: Client) -> bool:
    """Whether a 2026-07-28 upstream has anything to announce on a listen stream."""
    capabilities = client.server_capabilities
    subscribable = capabilities.resources is not None and bool(capabilities.resources.subscribe)
    return subscribable or any(
        kind is not None and kind.list_changed
        for kind in (capabilities.tools, capabilities.prompts, capabilities.resources)
    )


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
