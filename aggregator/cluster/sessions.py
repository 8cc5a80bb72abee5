"""2025-11-25 session records in Redis, so that any replica can continue any session.

A record says what the session's `initialize` settled and what the client changed since: the
session id, a digest of the principal the session is bound to (never a token), the negotiated
protocol version, the client's initialize params (capabilities, clientInfo), its log level and
its resource subscriptions. It lives under the prefix and a SHA-256 of the session id (a fixed
shape, whatever a header holds), expires `ttl` seconds (the session idle timeout) after the session
was last used, and is
deleted (and the end published, so every replica drops its copy) when the session is deleted. A
replica that writes a record or adopts a session says so (`sessions-moved`): another replica holding
a copy marks it stale, and reads the record again before it next serves the session.

What is read back is checked as strictly as a request: a record that is not JSON, has another
shape, names another session, an unknown version or params the SDK would refuse is ignored and
logged, never adopted. Redis unavailable: nothing is written or read; sessions stay on the replica
that holds them, as without Redis (a client whose replica is gone initializes again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from mcp_types import InitializeRequestParams, LoggingLevel
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.asyncio import Redis

from aggregator.cluster.client import REDIS_ERRORS
from aggregator.cluster.health import RedisHealth

logger = logging.getLogger(__name__)

MAX_RECORD_CHARACTERS = 64 * 1024
"""A longer record is neither written nor adopted (and is logged): no client's initialize params are that long."""
MAX_SUBSCRIPTIONS = 256
MAX_URI_CHARACTERS = 2048
SESSION_ID_PATTERN = r"^[0-9a-f]{32}$"
"""The ids the SDK's session manager mints (`uuid4().hex`): any other header value is never looked up."""


def owner_digest(owner: Mapping[str, Any] | None) -> str:
    """The principal a session is bound to, as stored: a SHA-256 of the SDK's binding (client id, issuer, subject)."""
    text = json.dumps(dict(owner) if owner is not None else None, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(b"mcp-aggregator session owner\0" + text.encode("utf-8")).hexdigest()


class SessionRecord(BaseModel):
    """One 2025-11-25 session, as any replica needs it to continue the session."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_id: str = Field(pattern=SESSION_ID_PATTERN)
    owner: str = Field(pattern=r"^[0-9a-f]{64}$", description="`owner_digest` of the principal bound to the session.")
    protocol_version: str
    client: dict[str, Any] = Field(description="The client's initialize params (capabilities, clientInfo), as sent.")
    log_level: LoggingLevel | None = None
    subscriptions: tuple[str, ...] = Field(default=(), max_length=MAX_SUBSCRIPTIONS)

    @field_validator("protocol_version")
    @classmethod
    def _handshake_version(cls, value: str) -> str:
        if value not in HANDSHAKE_PROTOCOL_VERSIONS:
            raise ValueError(f"'{value[:40]}' is not a protocol version with sessions")
        return value

    @field_validator("client")
    @classmethod
    def _initialize_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        InitializeRequestParams.model_validate(value, by_name=False)
        return value

    @field_validator("subscriptions")
    @classmethod
    def _uris(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not 0 < len(uri) <= MAX_URI_CHARACTERS for uri in value):
            raise ValueError("a subscribed URI is empty or too long")
        return value

    def initialize_params(self) -> InitializeRequestParams:
        """The client's initialize params, typed (they were checked when the record was made or read)."""
        return InitializeRequestParams.model_validate(self.client, by_name=False)


Ended = Callable[[str], Awaitable[None]]
"""Told the id of a session deleted on another replica: ends this replica's copy, if it has one."""


class SharedSessions:
    """The session records this replica writes and reads (see the module docstring)."""

    def __init__(self, client: Redis, prefix: str, timeout: float, health: RedisHealth) -> None:
        self._client = client
        self._prefix = prefix
        self._timeout = timeout
        self._health = health
        self.channel = f"{prefix}sessions-ended"
        self.moved_channel = f"{prefix}sessions-moved"
        """Where a replica says it adopted a session or changed its record: other replicas' copies are stale."""
        self._replica = secrets.token_hex(8)
        self.stale: set[str] = set()
        """Sessions held here that another replica adopted or changed since: their record is read before next use."""
        self.ended: Ended | None = None
        """Set by whoever holds the sessions (the HTTP edge): called for each session ended elsewhere."""
        self._held: dict[str, str] = {}
        """Key digest -> session id, for the sessions this replica has shared or adopted (to end them when told)."""
        self._refreshed: dict[str, float] = {}
        self.adoptions = 0
        """Sessions this replica has adopted from their records so far (shown on /metrics)."""

    def key(self, session_id: str) -> str:
        return f"{self._prefix}session:{_digest(session_id)}"

    async def save(self, record: SessionRecord, ttl: float) -> None:
        """Write `record`, to expire after `ttl` seconds; a record too long to adopt is not written."""
        text = record.model_dump_json()
        if len(text) > MAX_RECORD_CHARACTERS:
            logger.warning("cluster.session_not_shared", extra={"reason": "record too long", "characters": len(text)})
            return
        digest = _digest(record.session_id)
        self._held[digest] = record.session_id

        async def set_and_publish() -> object:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self.key(record.session_id), text, ex=_seconds(ttl))
                pipe.publish(self.moved_channel, f"{self._replica} {digest}")
                return await pipe.execute()

        if await self._call(set_and_publish) is not None:
            self._refreshed[record.session_id] = time.monotonic()

    async def load(self, session_id: str) -> SessionRecord | None:
        """The record of `session_id`, or None (none, unreadable, or Redis unavailable)."""
        text = await self._call(lambda: self._client.get(self.key(session_id)))
        if text is None:
            return None
        try:
            if not isinstance(text, str) or len(text) > MAX_RECORD_CHARACTERS:
                raise ValueError("not a string of at most MAX_RECORD_CHARACTERS")
            record = SessionRecord.model_validate_json(text)
            if record.session_id != session_id:
                raise ValueError("the record names another session")
        except (ValueError, ValidationError) as error:
            reason = str(error).splitlines()[0][:200]
            logger.warning("cluster.session_record_ignored", extra={"key": self.key(session_id), "reason": reason})
            return None
        return record

    async def adopted(self, session_id: str) -> None:
        """This replica now holds `session_id` too (adopted from its record): noted, counted, and said, so that
        another replica holding a copy reads the record again before it serves the session next."""
        digest = _digest(session_id)
        self._held[digest] = session_id
        self.adoptions += 1
        self._refreshed[session_id] = time.monotonic()
        await self._call(lambda: self._client.publish(self.moved_channel, f"{self._replica} {digest}"))

    async def refresh(self, session_id: str, ttl: float) -> None:
        """The session was used here: its record expires `ttl` seconds from now (pushed back at most once
        per quarter of `ttl`, so the record never outlives the session's own idle timeout)."""
        last = self._refreshed.get(session_id)
        now = time.monotonic()
        if last is None or now - last < ttl / 4:
            return
        self._refreshed[session_id] = now
        await self._call(lambda: self._client.expire(self.key(session_id), _seconds(ttl)))

    async def end(self, session_id: str) -> None:
        """The session was deleted here: delete its record and tell every replica to drop its copy."""
        digest = _digest(session_id)
        self._forget(digest)
        key = self.key(session_id)

        async def delete_and_publish() -> object:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.publish(self.channel, digest)
                return await pipe.execute()

        await self._call(delete_and_publish)

    async def heard(self, digest: object) -> None:
        """A replica published the end of the session whose key digest is `digest`."""
        if not isinstance(digest, str) or (session_id := self._held.get(digest)) is None:
            return
        self._forget(digest)
        if self.ended is not None:
            await self.ended(session_id)

    def heard_moved(self, message: object) -> None:
        """Another replica adopted a session or changed its record (`<replica> <digest>`): a copy here is stale."""
        replica, _, digest = message.partition(" ") if isinstance(message, str) else ("", "", "")
        if replica and replica != self._replica and (session_id := self._held.get(digest)) is not None:
            self.stale.add(session_id)
            logger.info("cluster.session_moved", extra={"key": self.key(session_id)})

    def forget_ended(self, alive: Callable[[str], bool]) -> None:
        """Drop what is kept for sessions that ended here without a DELETE (idle expiry, crash)."""
        for digest, session_id in list(self._held.items()):
            if not alive(session_id):
                self._forget(digest)

    def __len__(self) -> int:
        """Sessions this replica holds a note of (shared or adopted)."""
        return len(self._held)

    def _forget(self, digest: str) -> None:
        if (session_id := self._held.pop(digest, None)) is not None:
            self._refreshed.pop(session_id, None)
            self.stale.discard(session_id)

    async def _call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis command within the timeout; None (and Redis marked down, logged once) if it fails."""
        if not self._health.available:
            self._health.fell_back()
            return None
        try:
            with anyio.fail_after(self._timeout):
                return await command()
        except REDIS_ERRORS as error:
            self._health.down(error)
            return None


def _seconds(ttl: float) -> int:
    return max(1, int(ttl))


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()
