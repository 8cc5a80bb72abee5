"""An upstream's own tasks (SEP-2663): the call behind a gateway task, run as a task on an upstream that serves them.

A gateway task's background call (`aggregator.tasks.runner`) runs with `current_task_link` set.
When the upstream speaks 2026-07-28 and advertises `io.modelcontextprotocol/tasks`, that call
declares the extension in its client capabilities (the request stamp reads `tasks_declared`), and
an upstream that answers with a task (`resultType: "task"`) is followed with `tasks/get` until the
task ends: each poll is one request on the upstream's request path (its timeout, breaker and byte
limit), spaced by the upstream's `pollIntervalMs` within the link's bounds. The upstream's questions
(`input_required`) are put to the gateway task (`TaskLink.ask`) and the answers sent back with
`tasks/update`. When the gateway stops following a task that has not ended (the gateway task is
cancelled, expires or the gateway shuts down; the upstream's answer is unusable) it sends
`tasks/cancel`, shielded and bounded. Every other call, and every other request, declares no
tasks: an upstream can answer with a task only where the gateway follows it.

The upstream's task id stays here: the caller only ever sees the gateway's own task.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

import anyio
import mcp_types as types
from mcp import Client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from aggregator.errors import GatewayError, UpstreamProtocolError, UpstreamRejectedError, UpstreamTaskCancelledError
from aggregator.upstreams.requests import EMPTY_RESULT, RequestPath
from aggregator.upstreams.task_wire import (
    CALL_OR_TASK,
    QUESTIONS,
    RELATED_TASK_META_KEY,
    STATUSES,
    TASK_STATE,
    CancelTask,
    CreatedTask,
    GetTask,
    TaskParams,
    TaskState,
    UpdateTask,
)

logger = logging.getLogger(__name__)

EXTENSION = "io.modelcontextprotocol/tasks"
"""The extension identifier, as callers declare it and servers advertise it."""
DEFAULT_POLL_SECONDS = 1.0
"""Seconds between two tasks/get when the upstream names no usable poll interval (within the bounds below)."""
POLL_FLOOR = 0.05
"""Fewest seconds between two tasks/get for one upstream task, whatever `pollIntervalMs` the upstream asks for."""
POLL_CEILING = 30.0
"""Most seconds between two tasks/get for one upstream task (an upstream cannot stall its task beyond the TTL)."""
CANCEL_WITHIN = 5.0
"""Seconds the tasks/cancel for an upstream task the gateway gives up on may take (it is also a request on
the upstream's request path, within the upstream's timeout)."""

Ask = Callable[[Mapping[str, types.InputRequest]], Awaitable[types.InputResponses]]


@dataclass(frozen=True, slots=True)
class TaskLink:
    """The gateway task a background call runs for, as the upstream side reaches it.

    `ask` surfaces questions on the gateway task and returns once the caller answered them all;
    polls are spaced `poll_floor`..`poll_ceiling` seconds; `cancel_within` bounds the tasks/cancel
    sent for a task left behind.
    """

    ask: Ask
    task_id: str
    """The gateway task's id, for the log."""
    poll_floor: float = POLL_FLOOR
    poll_ceiling: float = POLL_CEILING
    cancel_within: float = CANCEL_WITHIN


current_task_link: ContextVar[TaskLink | None] = ContextVar("current_task_link", default=None)
"""Set by the task runner for the background call of a gateway task; None for every other request."""
held_slots: ContextVar[Callable[[], None] | None] = ContextVar("held_slots", default=None)
"""Releases the concurrency slots (per principal, per upstream) the current call holds; set by the request
handler. A call the upstream has turned into its own task gives them up while it is followed: the upstream does
the work, the gateway only polls, and such calls are bounded by the gateway's task limits instead."""
_declaring: ContextVar[bool] = ContextVar("declaring_tasks", default=False)


def offers_tasks(client: Client | None) -> bool:
    """Whether the upstream behind `client` speaks 2026-07-28 and advertises the tasks extension."""
    if client is None or client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    extensions = client.server_capabilities.extensions
    return extensions is not None and EXTENSION in extensions


def tasks_declared(capabilities: dict[str, Any]) -> dict[str, Any]:
    """`capabilities` as they go upstream: with the tasks extension while following a task, without it otherwise."""
    extensions = capabilities.get("extensions")
    others = dict(extensions) if isinstance(extensions, Mapping) else {}
    declaring = _declaring.get()
    if (EXTENSION in others) == declaring:
        return capabilities
    others.pop(EXTENSION, None)
    if declaring:
        others[EXTENSION] = {}
    shaped = {key: value for key, value in capabilities.items() if key != "extensions"}
    return {**shaped, "extensions": others} if others else shaped


async def call_as_task(
    requests: RequestPath, upstream: str, request: types.CallToolRequest, link: TaskLink
) -> types.CallToolResult | types.InputRequiredResult:
    """Send `request` declaring the tasks extension; follow the task the upstream answers with, if any."""
    token = _declaring.set(True)
    try:
        answer = await _call(requests, upstream, request, link)
        if not isinstance(answer, CreatedTask):
            return answer
        logged = {"task": link.task_id, "upstream": upstream, "upstream_task": answer.task_id}
        logger.info("upstream_task.created", extra={**logged, "tool": request.params.name})
        if (release := held_slots.get()) is not None:
            release()
        return await _UpstreamTask(requests, upstream, answer, link).follow()
    finally:
        _declaring.reset(token)


async def _call(
    requests: RequestPath, upstream: str, request: types.CallToolRequest, link: TaskLink
) -> types.CallToolResult | types.InputRequiredResult | CreatedTask:
    """Send the task-augmented tools/call. Cancelled while the answer is on its way, it still waits for that answer
    (up to `link.cancel_within`), so that a task the upstream made meanwhile is cancelled rather than left running."""
    label = f"tools/call '{request.params.name}'"
    answers: list[types.CallToolResult | types.InputRequiredResult | CreatedTask] = []
    failures: list[Exception] = []
    arrived = anyio.Event()
    shield = anyio.CancelScope(shield=True)

    async def send() -> None:
        with shield:
            try:
                answers.append(await requests.send(label, request, CALL_OR_TASK))
            except Exception as error:  # noqa: BLE001 - raised again in the calling task, not in an exception group
                failures.append(error)
            finally:
                arrived.set()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(send)
            try:
                await arrived.wait()
            except anyio.get_cancelled_exc_class():
                shield.deadline = anyio.current_time() + link.cancel_within
                raise
    except anyio.get_cancelled_exc_class():
        if answers and isinstance(created := answers[0], CreatedTask):
            await _cancel(requests, upstream, created.task_id, link)
        raise
    if failures:
        raise failures[0]
    return answers[0]


async def _cancel(requests: RequestPath, upstream: str, task_id: str, link: TaskLink) -> None:
    """Ask the upstream to cancel a task the gateway no longer follows: shielded, bounded, best effort."""
    logged = {"task": link.task_id, "upstream": upstream, "upstream_task": task_id}
    with anyio.CancelScope(shield=True), anyio.move_on_after(link.cancel_within) as bounded:
        try:
            await requests.send("tasks/cancel", CancelTask(params=TaskParams(task_id=task_id)), EMPTY_RESULT)
        except GatewayError as error:
            logger.info("upstream_task.cancel_failed", extra={**logged, "error": str(error)})
            return
        logger.info("upstream_task.cancelled", extra=logged)
    if bounded.cancelled_caught:
        logger.info(
            "upstream_task.cancel_failed", extra={**logged, "error": f"no answer within {link.cancel_within:g} s"}
        )


class _UpstreamTask:
    """One upstream task, followed until it ends (or cancelled upstream when the gateway stops following it)."""

    def __init__(self, requests: RequestPath, upstream: str, created: CreatedTask, link: TaskLink) -> None:
        self.requests = requests
        self.upstream = upstream
        self.task_id = created.task_id
        self.link = link
        self.interval = self._interval(created.poll_interval_ms)
        self.answered: set[str] = set()

    async def follow(self) -> types.CallToolResult:
        ended = False
        try:
            while True:
                await anyio.sleep(self.interval)
                state = await self._get()
                if state.status in ("completed", "failed", "cancelled"):
                    ended = True
                    return self._outcome(state)
                if state.status == "input_required":
                    await self._answer(state.input_requests)
        finally:
            if not ended:
                await _cancel(self.requests, self.upstream, self.task_id, self.link)

    async def _get(self) -> TaskState:
        label = "tasks/get"
        state = await self.requests.send(label, GetTask(params=TaskParams(task_id=self.task_id)), TASK_STATE)
        if state.task_id != self.task_id:
            raise self._invalid(label, f"the state of another task ({_shown(state.task_id)})")
        if not isinstance(state.status, str) or state.status not in STATUSES:
            raise self._invalid(label, f"a task with the unknown status {_shown(state.status)}")
        if state.poll_interval_ms is not None:
            self.interval = self._interval(state.poll_interval_ms)
        return state

    def _outcome(self, state: TaskState) -> types.CallToolResult:
        """The upstream's result (or its error raised) once its task ended."""
        if state.status == "completed":
            try:
                result = types.CallToolResult.model_validate(state.result, by_name=False)
            except ValidationError:
                raise self._invalid("tasks/get", "a completed task without a valid tool result") from None
            if result.meta:
                result.meta.pop(RELATED_TASK_META_KEY, None)  # the upstream's task id stays here
            return result
        if state.status == "failed":
            try:
                error = types.ErrorData.model_validate(state.error, by_name=False)
            except ValidationError:
                raise self._invalid("tasks/get", "a failed task without a valid error") from None
            raise UpstreamRejectedError(self.upstream, error.code, error.message, error.data)
        raise UpstreamTaskCancelledError(self.upstream)

    async def _answer(self, questions: Any) -> None:
        """Put the upstream's new questions to the gateway task; send the answers back with tasks/update."""
        try:
            asked = QUESTIONS.validate_python(questions, by_name=False)
        except ValidationError:
            raise self._invalid("tasks/get", "a task waiting for input without valid input requests") from None
        new = {key: question for key, question in asked.items() if key not in self.answered}
        if not new:
            return  # answered already; the upstream has not moved on yet
        for question in new.values():
            if question.params is not None and question.params.meta:
                meta = cast("dict[str, Any]", question.params.meta)  # a TypedDict, open to any `_meta` key
                meta.pop(RELATED_TASK_META_KEY, None)  # the upstream's task id stays here
        answers = await self.link.ask(new)
        self.answered |= new.keys()
        responses = {
            key: answer.model_dump(by_alias=True, mode="json", exclude_none=True) for key, answer in answers.items()
        }
        update = UpdateTask(params=TaskParams(task_id=self.task_id, input_responses=responses))
        await self.requests.send("tasks/update", update, EMPTY_RESULT)

    def _interval(self, milliseconds: Any) -> float:
        """The upstream's poll interval in seconds within the link's bounds (a second when it gives none it can)."""
        usable = isinstance(milliseconds, int | float) and not isinstance(milliseconds, bool) and milliseconds >= 0
        # Capped before dividing: a huge integer (JSON has no bound) does not convert to a float.
        seconds = min(milliseconds, self.link.poll_ceiling * 1000) / 1000 if usable else DEFAULT_POLL_SECONDS
        return min(max(seconds, self.link.poll_floor), self.link.poll_ceiling)

    def _invalid(self, method: str, problem: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(self.upstream, method, problem)


def _shown(value: Any) -> str:
    """A value from an upstream, short enough for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."
