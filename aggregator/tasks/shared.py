"""The seam between the tasks extension and the replicas it shares tasks with (`aggregator.cluster.tasks`).

A task runs on the replica that created it. With `cluster.redis_url` set, that replica mirrors the
task's record where every replica reads it (`SharedTaskRecords`), so tasks/get, tasks/update and
tasks/cancel are served by whichever replica nginx sends them to: the record answers tasks/get,
and the other two are sent to the running replica as commands, which it applies as its own
handlers would, after the same owner check. The tasks package does not import the cluster: the
gateway hands the extension an implementation (`aggregator.cluster.tasks.SharedTasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from aggregator.tasks.task import Task

CommandHandler = Callable[[Mapping[str, Any]], None]
"""Applies a command about one of this replica's tasks: {"task", "owner" (digest), "command", "responses",
"message"}; "command" is "cancel" or "update" from another replica, or "lapsed" (with its "message") when the
other replicas took the task as lost while this one was out of Redis's reach."""


class SharedTaskRecords(Protocol):
    """Task records every replica reads, and commands that reach the replica running a task."""

    def serve(self, handler: CommandHandler) -> None:
        """Have `handler` apply the commands other replicas send about this replica's tasks."""

    def track(self, task: Task, lifetime: float) -> None:
        """Mirror `task` (handed to its caller) from now on, for `lifetime` more seconds at most."""

    def changed(self, task: Task) -> None:
        """`task` changed: mirror it again (`Task.on_change`, and answers taken without a status change)."""

    def forget(self, task: Task) -> None:
        """`task` was dropped or expired here: it reads as unknown on every replica."""

    def owns(self, owner: str, digest: str) -> bool:
        """Whether a command's owner `digest` names `owner`."""

    async def read(self, task_id: str, owner: str) -> dict[str, Any] | None:
        """`owner`'s task `task_id` as tasks/get shows it, if another replica runs it; else None.

        Raises `SharedStateUnavailableError` when the other replicas' tasks cannot be read now.
        """

    async def send(self, task_id: str, owner: str, command: Literal["cancel", "update"], responses: Any) -> bool:
        """Send `command` to the replica running `owner`'s task `task_id`; False when there is no such task.

        Raises `LimitExceededError` when the answers (`responses`) are too large to send, and
        `SharedStateUnavailableError` when the other replicas' tasks cannot be reached now.
        """
