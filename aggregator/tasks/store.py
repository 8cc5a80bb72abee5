"""The tasks this replica holds, by id and owner, within the `tasks` settings' bounds.

Bounds, each with the setting that names it: a task lives `ttl` seconds from its creation (a
running one is cancelled then); one owner holds at most `max_tasks_per_principal` and everyone
together `max_tasks` (to make room the owner's, then anyone's, oldest finished task is dropped;
with none finished, creation is refused); one result keeps at most `max_result_bytes` (a larger
one fails its task) and all results together `max_stored_bytes` (the oldest finished tasks are
dropped). A dropped or expired task reads as unknown, exactly as another owner's does.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import mcp_types as types

from aggregator.config.tasks import TasksSettings
from aggregator.tasks.task import Task, TaskLimitError, UnknownTaskError

logger = logging.getLogger(__name__)


class TaskStore:
    """Tasks by id, each visible to its owner only; `clock` is monotonic seconds (injectable for tests)."""

    def __init__(self, settings: TasksSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._tasks: dict[str, Task] = {}  # insertion order is creation order: the oldest first
        self._stored_bytes = 0
        self.forgotten: Callable[[Task], None] = lambda task: None
        """Told of each task dropped or expired (its shared record goes too, `aggregator.tasks.shared`)."""

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def stored_bytes(self) -> int:
        return self._stored_bytes

    def create(self, owner: str, tool: str) -> Task:
        """A new `working` task for `owner`, once it fits the bounds (`TaskLimitError` if it cannot)."""
        self.purge()
        mine = [task for task in self._tasks.values() if task.owner == owner]
        if len(mine) >= self.settings.max_tasks_per_principal and not self._drop_oldest_finished(mine):
            raise TaskLimitError(
                f"You hold {len(mine)} unfinished tasks, the most allowed (tasks.max_tasks_per_principal); "
                "wait for one to finish or cancel one."
            )
        if len(self._tasks) >= self.settings.max_tasks and not self._drop_oldest_finished(self._tasks.values()):
            raise TaskLimitError(
                f"The gateway holds {len(self._tasks)} unfinished tasks, the most allowed (tasks.max_tasks); "
                "try again later."
            )
        task = Task(
            task_id=secrets.token_urlsafe(18),
            owner=owner,
            tool=tool,
            expires_at=self.clock() + self.settings.ttl,
            ttl_ms=round(self.settings.ttl * 1000),
            poll_interval_ms=max(1, round(self.settings.poll_interval * 1000)),
        )
        self._tasks[task.task_id] = task
        return task

    def get(self, task_id: str, owner: str) -> Task:
        """`owner`'s task `task_id`, or `UnknownTaskError` (also for another owner's: the same answer)."""
        self.purge()
        task = self._tasks.get(task_id)
        if task is None or not secrets.compare_digest(task.owner, owner):
            raise UnknownTaskError(task_id)
        return task

    def find(self, task_id: str) -> Task | None:
        """The task `task_id` whoever owns it (for a command whose owner the caller checks itself)."""
        self.purge()
        return self._tasks.get(task_id)

    def discard(self, task: Task) -> None:
        """Forget `task` (a call answered directly, or one whose caller left before it was answered)."""
        if self._tasks.pop(task.task_id, None) is task:
            self._stored_bytes -= task.size
            task.size = 0
            self.forgotten(task)

    def complete(self, task: Task, result: types.CallToolResult) -> None:
        """Keep `result` for `task`, within `max_result_bytes` (else the task fails saying so)."""
        wire = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        wire.pop("resultType", None)
        size = len(json.dumps(wire, separators=(",", ":")))
        if size > self.settings.max_result_bytes:
            message = (
                f"The result of '{task.tool}' is {size} bytes; a task keeps at most "
                f"{self.settings.max_result_bytes} (tasks.max_result_bytes)."
            )
            self.fail(task, {"code": types.INTERNAL_ERROR, "message": message})
            return
        if self._keep(task, size):
            task.result = wire
            task.move("completed")

    def fail(self, task: Task, error: dict[str, Any]) -> None:
        """Keep the JSON-RPC `error` that ended `task`."""
        size = len(json.dumps(error, separators=(",", ":")))
        if self._keep(task, size):
            task.error = error
            task.move("failed", str(error.get("message", "")))

    def purge(self) -> None:
        """Drop the tasks whose time is up, cancelling those still running."""
        now = self.clock()
        for task in [task for task in self._tasks.values() if task.expires_at <= now]:
            if task.cancel_scope is not None and not task.terminal:
                task.cancel_scope.cancel()
            logger.info("task.expired", extra={"task": task.task_id, "tool": task.tool, "status": task.status})
            self.discard(task)

    def _keep(self, task: Task, size: int) -> bool:
        """Count `size` bytes for `task`, dropping the oldest finished tasks to make room; False if it is gone."""
        if task.task_id not in self._tasks:
            return False
        while self._stored_bytes + size > self.settings.max_stored_bytes:
            if not self._drop_oldest_finished(self._tasks.values()):
                break  # the running tasks keep nothing yet: this one result fits max_result_bytes
        self._stored_bytes += size
        task.size = size
        return True

    def _drop_oldest_finished(self, tasks: Any) -> bool:
        oldest = next((task for task in tasks if task.terminal), None)
        if oldest is None:
            return False
        logger.info("task.dropped", extra={"task": oldest.task_id, "tool": oldest.tool, "reason": "bounds"})
        self.discard(oldest)
        return True
