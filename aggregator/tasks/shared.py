"""The seam between the tasks extension and the replicas it shares tasks with (`aggregator.cluster.tasks`).

A task runs on the replica that created it. With `cluster.redis_url` set, that replica mirrors the
task's record where every replica reads it (`SharedTaskRecords`), so tasks/get, tasks/update and
tasks/cancel are served by whichever replica nginx sends them to: the record answers tasks/get,
and the other two are sent to the running replica as commands (`TaskCommand`), which applies them
as its own handlers would, after the same owner check.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, Literal, Protocol

from typing_extensions import TypedDict

from aggregator.tasks.task import Task

LAPSED = "The replica running this task stopped (its heartbeat lapsed); the outcome of the call is unknown."
"""How a task ends when its replica is gone: on every replica, and on its own if it comes back."""
TASK_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
"""What the gateway's task ids look like (`secrets.token_urlsafe`): only such an id is looked up in Redis."""


class TaskCommand(TypedDict):
    """tasks/cancel or tasks/update sent to the replica running the task."""

    task: str
    owner: str
    """`owner_digest` of the caller: the running replica checks it against the task's owner."""
    command: Literal["cancel", "update", "lapsed"]
    """"lapsed" comes from this replica's own mirroring (`LAPSED`), never from another replica."""
    responses: dict[str, Any]


CommandHandler = Callable[[TaskCommand], None]


class SharedTaskRecords(Protocol):
    """Task records every replica reads, and commands that reach the replica running a task."""

    def serve(self, handler: CommandHandler) -> None:
        """Have `handler` apply the commands other replicas send about this replica's tasks."""

    def track(self, task: Task, lifetime: float) -> None:
        """Mirror `task` (handed to its caller) from now on, for `lifetime` more seconds at most."""

    def changed(self, task: Task) -> None:
        """`task` changed without a status change (an answer taken): mirror it again."""

    def forget(self, task: Task) -> None:
        """`task` was dropped or expired here: it reads as unknown on every replica."""

    async def read(self, task_id: str, owner: str) -> dict[str, Any] | None:
        """`owner`'s task `task_id` as tasks/get shows it, if another replica runs it; else None."""

    async def send(self, task_id: str, owner: str, command: Literal["cancel", "update"], responses: Any) -> bool:
        """Send `command` to the replica running `owner`'s task `task_id`; False when there is no such task.

        Raises `LimitExceededError` when the answers (`responses`) are too large to send.
        """


def owner_digest(owner: str) -> str:
    """What shared records keep of a task's owner: enough to compare, nothing to read."""
    return hashlib.sha256(b"mcp-aggregator task owner\0" + owner.encode("utf-8")).hexdigest()


def shareable(task_id: object) -> bool:
    """Whether `task_id` (as a caller sent it) may name a shared record: a key is never built from anything else."""
    return isinstance(task_id, str) and TASK_ID.fullmatch(task_id) is not None
