"""One replica's membership of the cluster: the Redis client, the shared parts, and the listener task."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import anyio

from aggregator.cluster.client import REDIS_ERRORS, connect
from aggregator.cluster.health import RedisHealth
from aggregator.cluster.ratelimit import RedisBuckets
from aggregator.cluster.records import Records, SharedRecords
from aggregator.cluster.registry_sync import SharedFile, check_scopes, check_servers
from aggregator.cluster.revocations import SharedRevocations
from aggregator.cluster.sessions import SharedSessions
from aggregator.cluster.tasks import SharedTasks
from aggregator.config.cluster import ClusterSettings
from aggregator.policy.revocation import RevocationList

logger = logging.getLogger(__name__)


class Cluster:
    """The state this replica shares with the others through Redis (`cluster.redis_url`).

    Built without connecting; `running()` owns the listener: it subscribes to revocations and to
    the shared files' versions, merges the revocation lists, reconciles the files, marks Redis
    available, and after any failure tries again every `retry_interval` seconds. Meanwhile
    `buckets`, `revocations` and `files` answer from local state.
    """

    def __init__(
        self,
        settings: ClusterSettings,
        revocations: Path,
        servers: Path | None = None,
        scopes: Path | None = None,
        pins: Records | None = None,
    ) -> None:
        assert settings.redis_url is not None
        self._settings = settings
        url = settings.redis_url.get_secret_value()
        self.health = RedisHealth(settings.redis_address(), secret=_password(url))
        self._client = connect(settings)
        self.buckets = RedisBuckets(self._client, settings.key_prefix, settings.timeout, self.health)
        self.revocations = SharedRevocations(
            self._client, settings.key_prefix, settings.timeout, RevocationList(revocations), self.health
        )
        shared = {"servers": (servers, check_servers), "scopes": (scopes, check_scopes)}
        self.files = {
            kind: SharedFile(self._client, settings.key_prefix, kind, path, check, settings.timeout, self.health)
            for kind, (path, check) in shared.items()
            if path is not None
        }
        """servers.yaml and scopes.yml as changed through admin tools (`written()`), by kind."""
        self.sessions = SharedSessions(self._client, settings.key_prefix, settings.timeout, self.health)
        """2025-11-25 session records (`aggregator.cluster.adoption` shares the sessions through them)."""
        self.pins = (
            SharedRecords(self._client, settings.key_prefix, "pins", settings.timeout, self.health, pins)
            if pins is not None
            else None
        )
        """Tool-definition pins (approvals, holds, rejections) merged with every replica's (`pins`: the gate's)."""
        self.tasks = SharedTasks(
            self._client, settings.key_prefix, settings.timeout, self.health, settings.heartbeat_interval
        )
        """2026-07-28 tasks: this replica's mirrored for the others, theirs read (`aggregator.tasks.shared`)."""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Listen for revocations and watch the local list until the block ends; close the client after."""
        try:
            if self.pins is not None:
                await self._first_pins()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._listen)
                tasks.start_soon(self.revocations.watch, self._settings.revocation_check_interval)
                for shared in self.files.values():
                    tasks.start_soon(shared.run)
                if self.pins is not None:
                    tasks.start_soon(self.pins.run)
                tasks.start_soon(self.tasks.run)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._settings.timeout * 4):
                await self.tasks.close()
                await self._client.aclose()

    async def _first_pins(self) -> None:
        """Before the upstreams connect: the pins the other replicas decided (a server is then no "first listing")."""
        assert self.pins is not None
        try:
            await self.pins.reconcile()
        except REDIS_ERRORS as error:
            self.health.down(error)

    async def _listen(self) -> None:
        while True:
            try:
                await self._subscribed()
            except REDIS_ERRORS as error:
                self.health.down(error)
                await self._drop_connections()
            except Exception as error:  # the task's top level: log, answer locally, try again
                logger.exception("cluster.listener_failed")
                self.health.down(error)
            await anyio.sleep(self._settings.retry_interval)

    async def _drop_connections(self) -> None:
        """Close every pooled connection once Redis is lost. One made before it went away can look open (a reset
        socket reads as alive until used): after Redis returns, its first command would fail and mark Redis
        unavailable again, for one more round of local decisions and one more log line."""
        with anyio.move_on_after(self._settings.timeout), suppress(*REDIS_ERRORS):
            await self._client.connection_pool.disconnect()

    async def _subscribed(self) -> None:
        """One connection's life: subscribe, merge, then apply what others publish until it fails."""
        timeout = self._settings.timeout
        pubsub = self._client.pubsub()
        try:
            files = {shared.channel: shared for shared in self.files.values()}
            pins = [self.pins.channel] if self.pins is not None else []
            with anyio.fail_after(timeout):
                await pubsub.subscribe(
                    self.revocations.channel,
                    self.sessions.channel,
                    self.sessions.moved_channel,
                    self.tasks.channel,
                    *files,
                    *pins,
                )
            await self._reconcile()
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self._settings.retry_interval
                )
                if message is not None and message.get("type") == "message":
                    channel = str(message.get("channel"))
                    if (shared := files.get(channel)) is not None:
                        await shared.heard(message.get("data"))
                    elif channel == self.sessions.channel:
                        await self.sessions.heard(message.get("data"))
                    elif channel == self.sessions.moved_channel:
                        self.sessions.heard_moved(message.get("data"))
                    elif self.pins is not None and channel == self.pins.channel:
                        await self.pins.heard(message.get("data"))
                    elif channel == self.tasks.channel:
                        await self.tasks.heard(message.get("data"))
                    else:
                        await self.revocations.heard(message.get("data"))
                elif message is None and not self.health.available:
                    # A command failed while the channel stayed up: Redis answers again once this does.
                    await self._reconcile()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(timeout):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _reconcile(self) -> None:
        await self.revocations.reconcile()  # marks Redis available
        for shared in self.files.values():
            await shared.reconcile()
        if self.pins is not None:
            await self.pins.reconcile()
        await self.tasks.reconcile()


def _password(url: str) -> str:
    return urlsplit(url).password or ""
