"""Real upstreams that serve the tasks extension themselves, for the gateway to run its tasks through.

`serve_tasking` is an SDK low-level server with this project's own `TasksExtension` installed (every
call of a declaring caller becomes a task at once): its `work` tool runs until the test releases its
label, `confirm` asks a question once its call is a task, `crash` fails. `serve_liar` answers every
call with a task and then answers `tasks/get` as its tool's name says: with garbage, an unknown
status, a huge result, its own cancel, or `working` for ever. Both tell the test what reached them
(`Seen`); nothing here sleeps.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError

from aggregator.config.tasks import TasksSettings
from aggregator.policy.principal import AuthMethod, Principal, current_principal
from aggregator.tasks.extension import TaskParams, TasksExtension
from aggregator.tasks.task import EXTENSION, declares_tasks
from tests.harness import serve_asgi
from tests.tasks.upstream import Signals

Context = ServerRequestContext[Any, Any]
RELATED_TASK = "io.modelcontextprotocol/related-task"
UPSTREAM_SECRET = "the-upstreams-own-task"
"""What the tasking upstream puts in `_meta` as its task's id: it must never reach the gateway's caller."""
GATEWAY = Principal(subject="gateway", client_id="gateway", issuer="upstream", auth_method=AuthMethod.LOCAL)
"""Who the tasking upstream takes every request to come from: its tasks are the gateway's."""


class Seen(Signals):
    """`Signals`, and what reached the upstream: each tools/call (tool, declared tasks?) and each tasks/cancel."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bool]] = []
        self.task_ids: list[str] = []
        """The ids of the tasks the upstream made."""
        self.task_cancels: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        """By tool name (the liar) or label (the tasking upstream): a tasks/cancel for its task."""
        self.task_made: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        """By label: the tasking upstream answered the call with a task."""
        self.task_updates: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        """By label: a tasks/update for the tasking upstream's task."""
        self.task_polls: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        """By label: a tasks/get for the tasking upstream's task (the gateway follows it)."""


def _tool(name: str, **properties: str) -> types.Tool:
    schema = {"type": "object", "properties": {key: {"type": kind} for key, kind in properties.items()}}
    return types.Tool(name=name, description=f"The {name} tool.", input_schema=schema)


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)])


def build_tasking(seen: Seen) -> tuple[Server[Any], TasksExtension]:
    """The tasking upstream and its tasks extension (to be run while the server is served)."""
    labels: dict[str, str] = {}  # the upstream's task id -> the label of its `work` call

    async def list_tools(ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[_tool("work", label="string"), _tool("confirm", label="string"), _tool("crash")]
        )

    async def call_tool(
        ctx: Context, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        arguments = params.arguments or {}
        label = str(arguments.get("label", ""))
        if params.name == "work":
            seen.started[label].set()
            try:
                await seen.release[label].wait()
            except anyio.get_cancelled_exc_class():
                seen.cancelled[label].set()
                raise
            worked = _text(f"worked {label}")
            worked.meta = {RELATED_TASK: {"taskId": UPSTREAM_SECRET}}  # as an upstream may name its task
            return worked
        if params.name == "confirm":
            answer = (params.input_responses or {}).get("go-on")
            if not isinstance(answer, types.ElicitResult):
                await seen.task_made[label].wait()  # ask as a task, not in a direct answer to the call
                schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
                wire = {"message": f"Go on with {label}?", "requestedSchema": schema}
                meta = {"_meta": {RELATED_TASK: {"taskId": UPSTREAM_SECRET}}}
                question = types.ElicitRequestFormParams.model_validate({**wire, **meta}, by_name=False)
                return types.InputRequiredResult(input_requests={"go-on": types.ElicitRequest(params=question)})
            return _text(f"{label}: {answer.action} {(answer.content or {}).get('ok')}")
        raise MCPError(types.INTERNAL_ERROR, "The crash tool crashed.")

    server: Server[Any] = Server("tasking", on_list_tools=list_tools, on_call_tool=call_tool)
    extension = TasksExtension(TasksSettings(answer_within=0, poll_interval=0.05))
    extension.install(server)

    def as_gateway(method: str) -> None:
        entry = server.get_request_handler(method)
        assert entry is not None
        inner = entry.handler

        async def handler(ctx: Context, params: Any) -> HandlerResult:
            if method == "tools/call":
                seen.calls.append((params.name, declares_tasks(ctx.meta)))
            token = current_principal.set(GATEWAY)
            try:
                answer = await inner(ctx, params)
            finally:
                current_principal.reset(token)
            if method == "tools/call" and isinstance(answer, dict):
                seen.task_ids.append(answer["taskId"])
                labels[answer["taskId"]] = str((params.arguments or {}).get("label", ""))
                seen.task_made[labels[answer["taskId"]]].set()
            if method == "tasks/cancel":
                seen.task_cancels[labels.get(params.task_id, params.task_id)].set()
            if method == "tasks/update":
                seen.task_updates[labels.get(params.task_id, params.task_id)].set()
            if method == "tasks/get":
                seen.task_polls[labels.get(params.task_id, params.task_id)].set()
            return answer

        server.add_request_handler(method, entry.params_type, handler)

    for method in ("tools/call", "tasks/get", "tasks/update", "tasks/cancel"):
        as_gateway(method)
    return server, extension


@asynccontextmanager
async def serve_tasking() -> AsyncIterator[tuple[str, Seen]]:
    """Serve the tasking upstream on loopback; yield its /mcp URL and what it sees."""
    seen = Seen()
    server, extension = build_tasking(seen)
    async with extension.running(), serve_asgi(server.streamable_http_app(host="127.0.0.1")) as url:
        yield url, seen


LIES = ("garbage", "unknown_status", "huge", "endless", "upstream_cancelled", "overflowing", "disguised")
HUGE = 5000
"""Bytes of the `huge` tool's result: over the gateway's `tasks.max_result_bytes` in these tests."""


def build_liar(seen: Seen) -> Server[Any]:
    """An upstream that makes a task of every call of its `LIES` tools and then lies about it in tasks/get."""
    numbers = itertools.count(1)

    async def list_tools(ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[_tool(name) for name in (*LIES, "direct")])

    async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> HandlerResult:
        seen.calls.append((params.name, declares_tasks(ctx.meta)))
        if params.name == "direct":
            return _text("answered directly")
        shape = _task(f"{params.name}:{next(numbers)}", "working")
        seen.task_ids.append(shape["taskId"])
        if params.name == "disguised":  # a task that also looks like a result: it is still a task
            return {"resultType": "task", **shape, "content": [{"type": "text", "text": "not the result"}]}
        return {"resultType": "task", **shape}

    async def get(ctx: Context, params: TaskParams) -> dict[str, Any]:
        task_id = str(params.task_id)
        lie = task_id.split(":")[0]
        if lie == "garbage":
            return {"resultType": "complete", "taskId": 42, "status": ["not", "a", "task"]}
        if lie == "unknown_status":
            return {"resultType": "complete", **_task(task_id, "exploded")}
        if lie == "huge":
            result = _text("x" * HUGE).model_dump(by_alias=True, mode="json", exclude_none=True)
            return {"resultType": "complete", **_task(task_id, "completed"), "result": result}
        if lie == "disguised":
            result = _text("the real result").model_dump(by_alias=True, mode="json", exclude_none=True)
            return {"resultType": "complete", **_task(task_id, "completed"), "result": result}
        if lie == "overflowing":  # a poll interval no float can hold, on an answer that is otherwise fine
            result = _text("fine").model_dump(by_alias=True, mode="json", exclude_none=True)
            return {
                "resultType": "complete",
                **_task(task_id, "completed"),
                "pollIntervalMs": 10**400,
                "result": result,
            }
        if lie == "upstream_cancelled":
            return {"resultType": "complete", **_task(task_id, "cancelled")}
        return {"resultType": "complete", **_task(task_id, "working")}

    async def cancel(ctx: Context, params: TaskParams) -> dict[str, Any]:
        seen.task_cancels[str(params.task_id).split(":")[0]].set()
        return {}

    server: Server[Any] = Server("liar", on_list_tools=list_tools)
    server.add_request_handler("tools/call", types.CallToolRequestParams, call_tool)
    server.add_request_handler("tasks/get", TaskParams, get)
    server.add_request_handler("tasks/cancel", TaskParams, cancel)
    server.extensions[EXTENSION] = {}
    return server


def _task(task_id: str, status: str) -> dict[str, Any]:
    stamp = "2026-07-28T00:00:00.000Z"
    return {
        "taskId": task_id,
        "status": status,
        "createdAt": stamp,
        "lastUpdatedAt": stamp,
        "ttlMs": 3_600_000,
        "pollIntervalMs": 0,  # as often as it likes: the gateway's floor decides
    }


@asynccontextmanager
async def serve_liar() -> AsyncIterator[tuple[str, Seen]]:
    """Serve the lying upstream on loopback; yield its /mcp URL and what it sees."""
    seen = Seen()
    async with serve_asgi(build_liar(seen).streamable_http_app(host="127.0.0.1")) as url:
        yield url, seen
