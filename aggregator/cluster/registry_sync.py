"""servers.yaml and scopes.yml changes made through admin tools, applied by every replica.

A file is shared whole: after an admin tool changes it on one replica (`written()`), that
replica's text goes to one Redis hash with the next version number and a random id (an atomic
script: increment, store, publish the id). Every other replica hears the id, reads the hash (the
latest version, whichever id it heard), checks the text as its own loader would (a text it would
refuse is logged and skipped) and writes it into its own file under the file's lock, where its
registry watcher or policy watcher picks it up as it picks up a hand edit: nothing that reads the
files needs to know about Redis. A replica applies any shared id other than the one its file
holds (not only higher numbers), so a Redis that restarted empty and counts from 1 again is
followed as well.

Redis unavailable: the change is made locally and marked pending; on reconnection a pending change
is pushed (becoming the newest version), otherwise the shared version is applied. Two replicas
changing a file at the same moment: the later version wins whole.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path

import anyio
from redis.asyncio import Redis

from aggregator.cluster.client import REDIS_ERRORS
from aggregator.cluster.health import RedisHealth
from aggregator.config.files import locked, write_atomically
from aggregator.config.yamlfile import read_yaml
from aggregator.errors import GatewayError
from aggregator.policy.scopes import Policy, load_scopes
from aggregator.registry.models import validate_servers

logger = logging.getLogger(__name__)

MAX_TEXT_CHARACTERS = 4 * 1024 * 1024
"""A shared text longer than this is not applied (and logged): no operator file is that long."""

PUSH = """
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'text', ARGV[1], 'id', ARGV[3])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return version
"""

Check = Callable[[Path], None]
"""Raises `ConfigError` if the file at the path (a staging copy) is not one the replica's loader accepts."""


def check_servers(path: Path) -> None:
    """A servers file this replica can load (its `${VAR}` references filled from this replica's environment)."""
    validate_servers(read_yaml(path))


def check_scopes(path: Path) -> None:
    """A scopes.yml the policy loader accepts."""
    Policy(load_scopes(path))


class SharedFile:
    """One operator file (`kind`: "servers" or "scopes") kept equal on every replica through Redis."""

    def __init__(
        self, client: Redis, prefix: str, kind: str, path: Path, check: Check, timeout: float, health: RedisHealth
    ) -> None:
        self._client = client
        self._push = client.register_script(PUSH)
        self.kind = kind
        self.key = f"{prefix}{kind}"
        self.channel = f"{prefix}{kind}-versions"
        self.path = path
        self._check = check
        self._timeout = timeout
        self._health = health
        self.version = 0
        """The number of the shared version this replica's file holds (pushed from here or applied here)."""
        self.id: str | None = None
        """The id of that version: another id heard or read means another text."""
        self._pending = False
        self._wake = anyio.Event()
        self._changed: anyio.Event | None = None

    def written(self) -> None:
        """An admin tool changed the file here: share it (in the background; the tool does not wait for Redis)."""
        self._pending = True
        self._wake.set()

    async def run(self) -> None:
        """Push each local change as it is made (runs until cancelled)."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.push()

    async def push(self) -> None:
        """Share the file's text as the next version, if a local change is pending and Redis answers."""
        if not self._pending or not self._health.available:
            return
        self._pending = False
        identifier = secrets.token_hex(8)
        try:
            text = await anyio.to_thread.run_sync(self.path.read_text)
            with anyio.fail_after(self._timeout):
                version = int(await self._push(keys=[self.key], args=[text, self.channel, identifier]))
        except REDIS_ERRORS as error:
            self._pending = True
            self._health.down(error)
            return
        self._holds(version, identifier)
        logger.info("cluster.file_shared", extra={"file": self.kind, "version": version})

    async def reconcile(self) -> None:
        """On every connection: push a change made while away, else take a newer shared version."""
        if self._pending:
            await self.push()
            return
        await self._fetch()

    async def heard(self, identifier: object) -> None:
        """A replica published the version `identifier` (this one's own included: then nothing happens)."""
        if identifier != self.id and not self._pending:
            await self._fetch()

    async def _fetch(self) -> None:
        with anyio.fail_after(self._timeout):
            version, identifier, text = await self._client.hmget(self.key, ["version", "id", "text"])  # type: ignore[misc]
        if version is None or identifier is None or text is None or identifier == self.id:
            return
        try:
            number = int(version)
        except ValueError:
            logger.warning("cluster.file_version_ignored", extra={"file": self.kind, "key": self.key})
            return
        await self._apply(number, str(identifier), str(text))

    async def _apply(self, version: int, identifier: str, text: str) -> None:
        if len(text) > MAX_TEXT_CHARACTERS:
            logger.error("cluster.file_not_applied", extra={"file": self.kind, "version": version, "error": "too long"})
        else:
            try:
                await anyio.to_thread.run_sync(self._write, text)
            except (GatewayError, OSError, UnicodeError) as error:
                extra = {"file": self.kind, "version": version, "error": str(error)[:500]}
                logger.error("cluster.file_not_applied", extra=extra)
            else:
                logger.info("cluster.file_applied", extra={"file": self.kind, "version": version})
        self._holds(version, identifier)  # a refused version is not retried; the next change supersedes it

    def _write(self, text: str) -> None:
        with locked(self.path):
            if self.path.exists() and self.path.read_text(encoding="utf-8") == text:
                return
            staging = self.path.with_name(f".{self.path.name}.shared")
            staging.write_text(text, encoding="utf-8")
            try:
                self._check(staging)
            finally:
                staging.unlink(missing_ok=True)
            write_atomically(self.path, text)

    def _holds(self, version: int, identifier: str) -> None:
        self.version, self.id = version, identifier
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds, testing it again each time a shared version is pushed or applied here."""
        while not condition():
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
