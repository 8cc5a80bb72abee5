"""Tasks any replica serves: records mirrored by the replica that runs them, commands sent to it by pub/sub.

    <prefix>task:<id>        the task as tasks/get shows it, its owner's digest and its replica;
                             written by the running replica on every change, expiring with the task
    <prefix>replica:<id>     this replica's heartbeat while it runs tasks, renewed every `heartbeat_interval`
                             seconds and lapsing after three: a task whose replica's heartbeat lapsed
                             reads `failed`
    <prefix>tasks:<replica>  the channel where other replicas send tasks/cancel and tasks/update

A record that reads `failed` because its replica's heartbeat lapsed is written so (every replica
then agrees), and no record that is finished in Redis is ever written over: a replica that comes
back after its heartbeat lapsed (Redis was out of its reach) ends such a task `failed` itself.

A caller's task id names a key only if it has the shape of the gateway's own ids (`shareable`),
so no id can reach another key. Another principal's task reads as unknown, exactly as on the
running replica. Redis unavailable: each replica serves the tasks it runs, as without a cluster,
and mirrors them again when Redis returns.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import anyio
from redis.asyncio import Redis

from aggregator.cluster.client import REDIS_ERRORS
from aggregator.cluster.health import RedisHealth
from aggregator.cluster.task_records import LAPSED, WRITE, lapsed, owner_digest, parsed, shareable
from aggregator.errors import LimitExceededError, SharedStateUnavailableError

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARACTERS = 1024 * 1024
"""A command longer than this is ignored (answers to a task's questions are small)."""


class MirroredTask(Protocol):
    """What this module reads of a task (`aggregator.tasks.task.Task`)."""

    @property
    def task_id(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def tool(self) -> str: ...
    @property
    def terminal(self) -> bool: ...
    @property
    def detached(self) -> bool: ...
    def detailed(self) -> dict[str, Any]: ...


CommandHandler = Callable[[Mapping[str, Any]], None]
"""Applies a command about one of this replica's tasks (`aggregator.tasks.shared.CommandHandler`)."""


class SharedTasks:
    """This replica's tasks mirrored to Redis, other replicas' tasks read from it (`SharedTaskRecords`)."""

    def __init__(self, client: Redis, prefix: str, timeout: float, health: RedisHealth, heartbeat: float) -> None:
        self._client = client
        self._write = client.register_script(WRITE)
        self._prefix = prefix
        self._timeout = timeout
        self._health = health
        self._heartbeat = heartbeat
        self.replica = secrets.token_hex(8)
        self.channel = f"{prefix}tasks:{self.replica}"
        self._handler: CommandHandler = lambda command: None
        self._tracked: dict[str, tuple[MirroredTask, float]] = {}  # id -> (task, wall-clock end of its lifetime)
        self._dirty: set[str] = set()
        self._forgotten: set[str] = set()
        self._wake = anyio.Event()
        self._mirrored: set[str] = set()  # ids of tracked tasks whose latest state is in Redis
        self._written: anyio.Event | None = None
        self._beaten_at = -float("inf")
        self._mirroring = anyio.Lock()  # the writer, the listener's reconcile and close() take turns

    def serve(self, handler: CommandHandler) -> None:
        self._handler = handler

    def track(self, task: MirroredTask, lifetime: float) -> None:
        self._tracked[task.task_id] = (task, time.time() + lifetime)
        self.changed(task)

    def owns(self, owner: str, digest: str) -> bool:
        return secrets.compare_digest(owner_digest(owner), digest)

    def forget(self, task: MirroredTask) -> None:
        self._tracked.pop(task.task_id, None)
        if task.detached:  # handed to its caller, so perhaps mirrored
            self._dirty.discard(task.task_id)
            self._forgotten.add(task.task_id)
            self._wake.set()

    def changed(self, task: MirroredTask) -> None:
        if task.task_id in self._tracked:
            self._dirty.add(task.task_id)
            self._mirrored.discard(task.task_id)
            self._wake.set()

    async def run(self) -> None:
        """Beat the heart and mirror changed tasks until cancelled."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._beat)
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await self._mirror()

    async def reconcile(self) -> None:
        """On every connection: mirror every task again, heartbeat first (Redis may have restarted empty)."""
        self._beaten_at = -float("inf")  # Redis may have restarted empty: beat before the next record
        self._dirty.update(self._tracked)
        self._mirrored.clear()
        await self._mirror()

    async def close(self) -> None:
        """Leaving the cluster: mirror what changed last (calls cancelled by the shutdown), stop the heartbeat."""
        if not self._health.available:
            return
        await self._mirror()
        try:
            with anyio.fail_after(self._timeout):
                await self._client.delete(self._beat_key(self.replica))
        except REDIS_ERRORS as error:
            self._health.down(error)

    async def _beat(self) -> None:
        while True:
            if self._health.available and self._tracked:  # idle replicas leave Redis alone
                try:
                    await self._beat_once()
                except REDIS_ERRORS as error:
                    self._health.down(error)
            await anyio.sleep(self._heartbeat)

    async def _beat_once(self) -> None:
        with anyio.fail_after(self._timeout):
            await self._client.set(self._beat_key(self.replica), "1", px=round(self._heartbeat * 3000))
        self._beaten_at = anyio.current_time()

    async def _mirror(self) -> None:
        async with self._mirroring:
            await self._mirror_dirty()

    async def _mirror_dirty(self) -> None:
        if not self._health.available:
            return
        if self._forgotten:
            forgotten = list(self._forgotten)
            try:
                with anyio.fail_after(self._timeout):
                    await self._client.delete(*map(self._key, forgotten))
            except REDIS_ERRORS as error:
                self._health.down(error)
                return
            self._forgotten.difference_update(forgotten)
            self._mirrored.difference_update(forgotten)
        if self._dirty and anyio.current_time() - self._beaten_at > self._heartbeat:
            try:  # a record never names a replica without a heartbeat
                await self._beat_once()
            except REDIS_ERRORS as error:
                self._health.down(error)
                return
        for task_id in list(self._dirty):
            task, end = self._tracked[task_id]
            self._dirty.discard(task_id)
            lifetime = round((end - time.time()) * 1000)
            record = {"owner": owner_digest(task.owner), "replica": self.replica, "task": task.detailed()}
            written = 1
            try:
                with anyio.fail_after(self._timeout):
                    if lifetime > 0:
                        written = await self._write(keys=[self._key(task_id)], args=[json.dumps(record), lifetime])
            except REDIS_ERRORS as error:
                self._dirty.add(task_id)
                self._health.down(error)
                return
            self._mirrored.add(task_id)
            if task.terminal or lifetime <= 0 or not written:
                del self._tracked[task_id]
            if not written and not task.terminal:  # the others took it as lost while Redis was out of reach
                logger.warning("cluster.task_lapsed", extra={"task": task_id, "tool": task.tool})
                self._handler(
                    {"task": task_id, "owner": owner_digest(task.owner), "command": "lapsed", "message": LAPSED}
                )
        if self._written is not None:
            self._written.set()
            self._written = None

    def current(self, task_id: str) -> bool:
        """Whether Redis holds what this replica knows of `task_id`: its latest state, or nothing once forgotten."""
        if task_id in self._dirty or task_id in self._forgotten:
            return False
        return task_id in self._mirrored or task_id not in self._tracked

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds, testing it again after each round of mirroring."""
        while not condition():
            if self._written is None:
                self._written = anyio.Event()
            await self._written.wait()

    async def read(self, task_id: str, owner: str) -> dict[str, Any] | None:
        found = await self._record(task_id, owner)
        return found[1] if found is not None else None

    async def send(self, task_id: str, owner: str, command: Literal["cancel", "update"], responses: Any) -> bool:
        found = await self._record(task_id, owner)
        if found is None:
            return False
        replica, shape = found
        if shape.get("status") not in ("working", "input_required"):
            return True  # finished: nothing to cancel or answer
        message = {
            "task": task_id,
            "owner": owner_digest(owner),
            "command": command,
            "responses": responses if isinstance(responses, dict) else {},
        }
        text = json.dumps(message)
        if len(text) > MAX_MESSAGE_CHARACTERS:
            raise LimitExceededError(
                f"The answers to task '{task_id}' are {len(text)} characters; at most {MAX_MESSAGE_CHARACTERS} "
                "reach the replica running it."
            )
        try:
            with anyio.fail_after(self._timeout):
                heard = await self._client.publish(f"{self._prefix}tasks:{replica}", text)
        except REDIS_ERRORS as error:
            self._health.down(error)
            heard = 0
        if not heard:  # its listener is reconnecting: the caller may send it again
            logger.warning("cluster.task_command_lost", extra={"task": task_id, "command": command})
        return True

    async def heard(self, data: object) -> None:
        """A command about one of this replica's tasks (the handler checks the owner)."""
        if not isinstance(data, str) or len(data) > MAX_MESSAGE_CHARACTERS:
            return
        try:
            message: Any = json.loads(data)
        except ValueError:
            message = None
        fields = ("task", "owner", "command")
        if not (isinstance(message, dict) and all(isinstance(message.get(key), str) for key in fields)):
            logger.warning("cluster.task_command_ignored", extra={"replica": self.replica})
            return
        if message["command"] in ("cancel", "update") and isinstance(message.get("responses", {}), dict):
            self._handler(message)  # type: ignore[arg-type]

    async def _record(self, task_id: str, owner: str) -> tuple[str, dict[str, Any]] | None:
        """(replica, shape) of `owner`'s task `task_id` in Redis, `failed` if its replica is gone; None: unknown.

        Raises `SharedStateUnavailableError` (for any id of the right shape) while Redis is unavailable.
        """
        if not shareable(task_id):
            return None
        if not self._health.available:
            raise _unreachable(task_id)
        try:
            with anyio.fail_after(self._timeout):
                text = await self._client.get(self._key(task_id))
                record = parsed(text, task_id)
                if record is None or not secrets.compare_digest(record["owner"], owner_digest(owner)):
                    return None
                if record["replica"] == self.replica:  # not in this replica's store: dropped or expired here
                    return None
                shape: dict[str, Any] = record["task"]
                alive = True
                if shape.get("status") in ("working", "input_required"):
                    alive = bool(await self._client.exists(self._beat_key(record["replica"])))
        except REDIS_ERRORS as error:
            self._health.down(error)
            raise _unreachable(task_id) from None
        if not alive:
            shape = lapsed(shape)
            record["task"] = shape
            try:  # so every replica reads it so from now on, and its own replica too if it comes back
                with anyio.fail_after(self._timeout):
                    await self._write(keys=[self._key(task_id)], args=[json.dumps(record), "keep"])
            except REDIS_ERRORS as error:
                self._health.down(error)
        return str(record["replica"]), shape

    def _key(self, task_id: str) -> str:
        return f"{self._prefix}task:{task_id}"

    def _beat_key(self, replica: str) -> str:
        return f"{self._prefix}replica:{replica}"


def _unreachable(task_id: str) -> SharedStateUnavailableError:
    return SharedStateUnavailableError(
        f"Task '{task_id}' is not held by this replica, and the store the replicas share tasks through cannot "
        "be reached now; try again shortly."
    )
