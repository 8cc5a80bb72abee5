"""The background calls behind tasks, in one task group owned by `TaskRunner.running()`.

A call runs in the runner's task group, not in the request that started it, so it survives the
caller's disconnect. Its cancel scope is the task's: `tasks/cancel`, an expired TTL and the
gateway's shutdown all cancel the call, and a cancelled call is cancelled upstream (the upstream
request is abandoned the way a caller's own cancellation abandons it). A round that ends with
questions (`InputRequiredResult`) waits for `tasks/update` to answer every one, then the call is
made again with the answers, as a multi round-trip retry would.

On an upstream that serves tasks itself, the call runs as the upstream's own task
(`aggregator.upstreams.tasks`, through `current_task_link`): its questions are surfaced here the same
way, the answers go back with the upstream's tasks/update, and a cancelled call cancels that task.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.shared.exceptions import MCPError

from aggregator.tasks.store import TaskStore
from aggregator.tasks.task import Task
from aggregator.upstreams.tasks import TaskLink, current_task_link

logger = logging.getLogger(__name__)

Call = Callable[[types.CallToolRequestParams], Awaitable[types.CallToolResult | types.InputRequiredResult]]
"""One round of the call: the params (with the answers of earlier rounds) to the upstream's outcome."""


class TaskRunner:
    """Runs each task's call in the background and records its outcome in the store."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self._group: TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TaskRunner]:
        """Own the task group; leaving cancels every call still running (their tasks end `cancelled`)."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield self
            finally:
                self._group = None
                group.cancel_scope.cancel()

    def start(self, task: Task, call: Call, params: types.CallToolRequestParams) -> None:
        """Begin `task`'s call in the background (the caller's context, and so its principal, goes along)."""
        if self._group is None:
            raise RuntimeError("the task runner is not running")
        self._group.start_soon(self._run, task, call, params, name=f"task {task.task_id}")

    def cancel(self, task: Task) -> None:
        """Stop `task`'s call; the task ends `cancelled` (unless it had already ended)."""
        if task.cancel_scope is not None:
            task.cancel_scope.cancel()
        task.move("cancelled", "Cancelled by the caller.")

    async def _run(self, task: Task, call: Call, params: types.CallToolRequestParams) -> None:
        # The scope's deadline is the task's TTL: a call that never ends is ended even if nobody asks again.
        deadline = anyio.current_time() + max(0.0, task.expires_at - self.store.clock())
        with anyio.CancelScope(deadline=deadline) as scope:
            task.cancel_scope = scope
            if task.terminal:  # cancelled before it began
                return
            # This task's own context: the upstream may run the call as its own task, asking through this one.
            current_task_link.set(TaskLink(partial(self._ask, task), task.task_id))
            try:
                await self._rounds(task, call, params)
            except MCPError as error:
                self._fail(task, error.error.model_dump(by_alias=True, mode="json", exclude_none=True))
            except Exception:  # per-task top level: log with the traceback, record an internal error
                logger.exception("task.failed", extra={"task": task.task_id, "tool": task.tool})
                self._fail(task, {"code": types.INTERNAL_ERROR, "message": "Internal gateway error."})
        if scope.cancelled_caught:
            expired = anyio.current_time() >= deadline
            task.move("cancelled", "The task's time ran out (tasks.ttl)." if expired else "Cancelled.")
            logger.info("task.cancelled", extra={"task": task.task_id, "tool": task.tool})

    async def _rounds(self, task: Task, call: Call, params: types.CallToolRequestParams) -> None:
        while True:
            outcome = await call(params)
            if not task.detached:
                task.immediate = outcome  # the caller is still waiting: it gets the outcome itself
                task.move("completed")
                return
            if isinstance(outcome, types.CallToolResult):
                self.store.complete(task, outcome)
                return
            answers = await self._ask(task, outcome.input_requests or {})
            params = params.model_copy(update={"input_responses": answers, "request_state": outcome.request_state})

    async def _ask(self, task: Task, requests: Mapping[str, types.InputRequest]) -> types.InputResponses:
        """Surface the questions `requests` on the task and wait until tasks/update has answered each of them."""
        task.answers = {}
        task.move("input_required", "Waiting for the caller's answers (tasks/update).")
        task.rounds += 1
        keys = {f"{task.rounds}.{key}": key for key in requests}  # unique over the task's life, as SEP-2663 asks
        task.input_requests = {
            wire: requests[key].model_dump(by_alias=True, mode="json", exclude_none=True) for wire, key in keys.items()
        }
        while task.input_requests:
            await task.answered.wait()
            task.answered = anyio.Event()
        answers: types.InputResponses = {keys[wire]: answer for wire, answer in task.answers.items() if wire in keys}
        task.move("working")
        return answers

    def _fail(self, task: Task, error: dict[str, object]) -> None:
        if task.detached:
            self.store.fail(task, dict(error))
        else:
            task.error = dict(error)
            task.move("failed")
