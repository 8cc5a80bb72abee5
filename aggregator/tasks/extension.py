"""The tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`) served by the gateway for every tool.

`TasksExtension.install` registers it on the SDK's low-level server through its public API
(`get_request_handler`, `add_request_handler`, `Server.extensions`): `tools/call` is wrapped, and
`tasks/get`, `tasks/update` and `tasks/cancel` are added. A 2026-07-28 caller that declares the
extension in the request's client capabilities gets its call answered directly when it ends within
`tasks.answer_within` seconds, else with a task (`resultType: "task"`) while the call goes on in
the background (`runner`). Others, and every 2025-11-25 session, are served as before; the task
methods are unknown to 2025-11-25 sessions and need the extension declared on 2026-07-28 requests.

With `cluster.redis_url` set, a task handed to its caller is mirrored for the other replicas
(`aggregator.tasks.shared`): a task method naming a task this replica does not run is answered from
the shared record (tasks/get) or sent to the running replica (tasks/update, tasks/cancel).

The extension's errors are its own (SEP-2663 fixes their codes), so they become MCP errors here:
an unknown, expired or another principal's task is one answer, -32602; a limit, -32602 too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskStatus
from mcp.server import Server
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter, ValidationError

from aggregator.config.tasks import TasksSettings
from aggregator.errors import GatewayError, SharedStateUnavailableError
from aggregator.policy.principal import Principal, current_principal
from aggregator.tasks.runner import TaskRunner
from aggregator.tasks.shared import SharedTaskRecords
from aggregator.tasks.store import TaskStore
from aggregator.tasks.streams import holding_streams
from aggregator.tasks.task import EXTENSION, Task, UnknownTaskError, declares_tasks

logger = logging.getLogger(__name__)

Context = ServerRequestContext[Any, Any]
ToolCall = Callable[[Context, types.CallToolRequestParams], Awaitable[HandlerResult]]
MAX_TASK_ID = 256


class TaskParams(types.RequestParams):
    """Params of tasks/get, tasks/update and tasks/cancel, taken loosely so a bad one is refused by name."""

    task_id: Any = None
    input_responses: Any = None


_RESPONSE: TypeAdapter[types.InputResponse] = TypeAdapter(types.InputResponse)


class TasksExtension:
    """The store, the runner and the handlers of the tasks extension, for one SDK server."""

    def __init__(
        self, settings: TasksSettings, store: TaskStore | None = None, shared: SharedTaskRecords | None = None
    ) -> None:
        self.settings = settings
        self.store = store if store is not None else TaskStore(settings)
        self.runner = TaskRunner(self.store)
        self.shared = shared
        """The other replicas' tasks, and this one's mirrored for them (`cluster.redis_url`); None: this one's only."""
        if shared is not None:
            shared.serve(self._command)
            self.store.forgotten = shared.forget

    def running(self) -> AbstractAsyncContextManager[TaskRunner]:
        """Run the background calls; leaving cancels those still running."""
        return self.runner.running()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """`running()` as a background task of the gateway's own task group: until that group is cancelled."""
        async with self.running():
            task_status.started()
            await anyio.sleep_forever()

    def install(self, server: Server[Any]) -> None:
        """Wrap `server`'s tools/call (`tasks.stream_hold` too), add the task methods and advertise the extension
        (when enabled)."""
        entry = server.get_request_handler("tools/call")
        if entry is None:
            raise RuntimeError("the server has no tools/call handler to serve tasks for")
        held = holding_streams(entry.handler, self.settings.stream_hold)  # 2025-11-25 sessions' long calls
        if not self.settings.enabled:
            server.add_request_handler("tools/call", types.CallToolRequestParams, held)
            return
        server.add_request_handler("tools/call", types.CallToolRequestParams, self._tool_call(held))
        server.add_request_handler("tasks/get", TaskParams, self.get)
        server.add_request_handler("tasks/update", TaskParams, self.update)
        server.add_request_handler("tasks/cancel", TaskParams, self.cancel)
        server.extensions[EXTENSION] = {}

    def _tool_call(self, inner: ToolCall) -> ToolCall:
        async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> HandlerResult:
            principal = current_principal.get()
            if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS or principal is None:
                return await inner(ctx, params)
            if not (declares_tasks(ctx.meta) or declares_tasks(params.meta)):
                return await inner(ctx, params)
            return await self._as_task(ctx, principal, params, inner)

        return call_tool

    async def _as_task(
        self, ctx: Context, principal: Principal, params: types.CallToolRequestParams, inner: ToolCall
    ) -> HandlerResult:
        """Run the call in the background; answer with its outcome if it comes within `answer_within`, else the task."""
        try:
            task = self.store.create(owner_of(principal), params.name)
        except GatewayError as error:
            raise MCPError(types.INVALID_PARAMS, str(error)) from None

        async def call(round_params: types.CallToolRequestParams) -> types.CallToolResult | types.InputRequiredResult:
            outcome = await inner(ctx, round_params)
            if not isinstance(outcome, types.CallToolResult | types.InputRequiredResult):
                raise TypeError(f"tools/call answered {type(outcome).__name__}")
            return outcome

        self.runner.start(task, call, _without_progress(params))
        answered = False
        try:
            with anyio.move_on_after(self.settings.answer_within):
                await task.settled.wait()
            if task.terminal:
                answered = True
                self.store.discard(task)
                return _outcome(task)
            task.detached = True
            answered = True
            if self.shared is not None:
                self.shared.track(task, task.expires_at - self.store.clock())
                task.on_change = self.shared.changed
            logger.info(
                "task.created", extra={"task": task.task_id, "principal": principal.describe(), "tool": task.tool}
            )
            return task.created()
        finally:
            if not answered:  # the caller left before it learned the task's id: nobody can ever ask for it
                self.runner.cancel(task)
                self.store.discard(task)

    async def get(self, ctx: Context, params: TaskParams) -> dict[str, Any]:
        """tasks/get: the task with the payload of its status (questions, result or error) inlined."""
        task_id, owner = self._checked(ctx, "tasks/get", params)
        if (task := self._find(task_id, owner)) is not None:
            return task.detailed()
        with _shared_errors():
            if self.shared is not None and (shape := await self.shared.read(task_id, owner)) is not None:
                return shape
        raise _unknown(task_id)

    async def update(self, ctx: Context, params: TaskParams) -> dict[str, Any]:
        """tasks/update: answers to outstanding questions; others (unknown or answered keys) are ignored."""
        responses = params.input_responses
        if not isinstance(responses, dict):
            raise MCPError(
                types.INVALID_PARAMS,
                f"tasks/update needs params.inputResponses, an object of responses by request key "
                f"(got {type(responses).__name__}).",
            )
        task_id, owner = self._checked(ctx, "tasks/update", params)
        if (task := self._find(task_id, owner)) is not None:
            self._answer(task, responses)
            return {}
        with _shared_errors():
            shape = await self.shared.read(task_id, owner) if self.shared is not None else None
            if self.shared is None or shape is None:
                raise _unknown(task_id)
            asked = shape.get("inputRequests") or {}
            _answers(responses, asked)  # refused here as the running replica would refuse them
            await self.shared.send(task_id, owner, "update", {key: responses[key] for key in responses.keys() & asked})
        return {}

    def _answer(self, task: Task, responses: dict[str, Any]) -> None:
        answers = _answers(responses, task.input_requests)
        for key, answer in answers.items():
            del task.input_requests[key]
            task.answers[key] = answer
        task.answered.set()
        if self.shared is not None:
            self.shared.changed(task)

    async def cancel(self, ctx: Context, params: TaskParams) -> dict[str, Any]:
        """tasks/cancel: stop the call (upstream too); a finished task is left as it is."""
        task_id, owner = self._checked(ctx, "tasks/cancel", params)
        if (task := self._find(task_id, owner)) is not None:
            self._cancel(task)
            return {}
        with _shared_errors():
            if self.shared is None or not await self.shared.send(task_id, owner, "cancel", None):
                raise _unknown(task_id)
        return {}

    def _cancel(self, task: Task, where: str = "here") -> None:
        if not task.terminal:
            self.runner.cancel(task)
            logger.info("task.cancel", extra={"task": task.task_id, "tool": task.tool, "from": where})

    def _command(self, command: Mapping[str, Any]) -> None:
        """tasks/cancel or tasks/update sent by another replica about a task of this one, for the same owner."""
        task = self.store.find(command["task"])
        if task is None or self.shared is None or not self.shared.owns(task.owner, command["owner"]):
            logger.warning("task.command_ignored", extra={"task": command["task"][:64], "command": command["command"]})
            return
        if command["command"] == "cancel":
            self._cancel(task, "another replica")
            return
        if command["command"] == "lapsed":
            self.store.fail(task, {"code": types.INTERNAL_ERROR, "message": str(command.get("message"))})
            self.runner.cancel(task)
            return
        try:
            self._answer(task, command["responses"])
        except MCPError as error:
            logger.warning("task.answers_refused", extra={"task": task.task_id, "error": error.error.message})

    def _find(self, task_id: str, owner: str) -> Task | None:
        try:
            return self.store.get(task_id, owner)
        except UnknownTaskError:
            return None

    def _checked(self, ctx: Context, method: str, params: TaskParams) -> tuple[str, str]:
        """(task id, owner) of the caller's request, after the era, capability, params and routing-header checks."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            raise MCPError(types.METHOD_NOT_FOUND, f"{method} is served to 2026-07-28 requests only (SEP-2663).")
        if not declares_tasks(ctx.meta):
            raise MCPError(
                types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                f"{method} needs the '{EXTENSION}' extension in the request's client capabilities.",
                {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
            )
        task_id = params.task_id
        if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_TASK_ID:
            got = f"{len(task_id)} characters" if isinstance(task_id, str) else type(task_id).__name__
            raise MCPError(
                types.INVALID_PARAMS,
                f"{method} needs params.taskId, a string of 1 to {MAX_TASK_ID} characters (got {got}).",
            )
        headers = getattr(ctx.request, "headers", None)
        if headers is not None and decode_header_value(headers.get(MCP_NAME_HEADER)) != task_id:
            raise MCPError(types.HEADER_MISMATCH, f"The Mcp-Name header of {method} must be its params.taskId.")
        principal = current_principal.get()
        if principal is None:
            raise MCPError(types.INVALID_REQUEST, "Authentication required.")
        return task_id, owner_of(principal)


def _answers(responses: dict[str, Any], asked: dict[str, Any]) -> dict[str, types.InputResponse]:
    """The responses to questions in `asked` (others are ignored); -32602 naming the first malformed one."""
    answers: dict[str, types.InputResponse] = {}
    for key in responses.keys() & asked.keys():
        try:
            answers[key] = _RESPONSE.validate_python(responses[key], by_name=False)
        except ValidationError:
            raise MCPError(
                types.INVALID_PARAMS, f"params.inputResponses['{key}'] is not a response to the request it names."
            ) from None
    return answers


@contextmanager
def _shared_errors() -> Iterator[None]:
    """Another replica's task cannot be reached now (-32603: try again), or the answers are too large (-32602)."""
    try:
        yield
    except SharedStateUnavailableError as error:
        raise MCPError(types.INTERNAL_ERROR, str(error)) from None
    except GatewayError as error:
        raise MCPError(types.INVALID_PARAMS, str(error)) from None


def _unknown(task_id: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, str(UnknownTaskError(task_id)))


def owner_of(principal: Principal) -> str:
    """The key tasks are kept under: the same person through any token of the same issuer."""
    return f"{principal.issuer}|{principal.subject}"


def _outcome(task: Task) -> HandlerResult:
    """What a call that ended within the window answers: its result, or its error raised."""
    if task.immediate is not None:
        return task.immediate
    error = task.error or {"code": types.INTERNAL_ERROR, "message": "The call was cancelled."}
    raise MCPError(int(error.get("code", types.INTERNAL_ERROR)), str(error.get("message", "")), error.get("data"))


def _without_progress(params: types.CallToolRequestParams) -> types.CallToolRequestParams:
    """The params without a progress token: SEP-2663 sends no progress for tasks, and the request may be gone."""
    if not params.meta or "progress_token" not in params.meta:
        return params
    meta = {key: value for key, value in params.meta.items() if key != "progress_token"}
    return params.model_copy(update={"meta": meta})
