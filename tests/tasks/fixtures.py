"""The tools the conformance suite's `tasks-*` scenarios call, and the tasks extension that serves them, for
tests/servers/conformance_server.py.

The fixture upstream serves the tasks extension itself: `install_tasks` puts this project's own
`TasksExtension` on its low-level server, as `tests.tasks.own_tasks` does, with every request taken
to come from one principal (`SUITE`). A call of a declaring 2026-07-28 caller that outlasts
`answer_within` (0.5 s) becomes a task, so the task-supporting tools work for a second before they
answer or ask, and the sync-only `greet` answers at once. `REQUIRED_TASK_TOOLS` run only as tasks.
Wiring, in `ConformanceFixtures.__init__`: `served |= task_fixtures()`; at module level:
`INPUT_SCHEMAS |= TASK_SCHEMAS`; in `build_server`: `install_tasks(server)`, run while served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from aggregator.config.tasks import TasksSettings
from aggregator.policy.principal import AuthMethod, Principal, current_principal
from aggregator.tasks.extension import TasksExtension
from aggregator.tasks.task import EXTENSION, declares_tasks

WORK_SECONDS = 1.0
"""How long the task-supporting tools work first: twice `TASKS.answer_within` (and the gateway's default)."""
TASKS = TasksSettings(poll_interval=0.1)
"""The fixture's tasks: the default `answer_within` (0.5 s); polls asked for every 0.1 s, so that the gateway
following one of them sees each change soon."""
REQUIRED_TASK_TOOLS = ("failing_job", "test_tool_with_task")
"""Fixtures that run only as tasks (taskSupport "required"): tasks-required-task-error and tasks-mrtr-composition
expect a 2026-07-28 caller that does not declare the extension to be refused with -32021."""
SUITE = Principal(
    subject="conformance-suite", client_id="conformance-suite", issuer="fixture", auth_method=AuthMethod.LOCAL
)
"""Who the fixture takes every request to come from: it authenticates nobody, and each task needs an owner."""

Context = ServerRequestContext[Any, Any]
ToolCall = Callable[[Context, types.CallToolRequestParams], Awaitable[HandlerResult]]


class Call(Protocol):
    """What a fixture handler gets (the conformance server's `Exchange`)."""

    arguments: dict[str, Any]

    async def ask(
        self, requests: Mapping[str, types.InputRequest], state: Mapping[str, Any] | None = None
    ) -> dict[str, types.InputResponse]: ...


Handler = Callable[[Any], Awaitable[types.CallToolResult]]


def _text(value: str, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=value)], is_error=error)


def _elicit(message: str, properties: dict[str, Any]) -> types.ElicitRequest:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))


def _field(answer: types.InputResponse | None, name: str) -> Any:
    if isinstance(answer, types.ElicitResult) and answer.action == "accept" and answer.content:
        return answer.content.get(name)
    return None


async def greet(call: Call) -> types.CallToolResult:
    return _text(f"Hello, {call.arguments.get('name', 'World')}!")


async def slow_compute(call: Call) -> types.CallToolResult:
    seconds = float(call.arguments.get("seconds", 0))
    await anyio.sleep(min(max(seconds, 0.0), 300.0))
    return _text(f"Computed {call.arguments.get('label', '')} in {seconds:g} s.")


async def failing_job(call: Call) -> types.CallToolResult:
    await anyio.sleep(WORK_SECONDS)
    return _text("The job failed.", error=True)


async def protocol_error_job(call: Call) -> types.CallToolResult:
    await anyio.sleep(WORK_SECONDS)
    raise MCPError(types.INTERNAL_ERROR, "The job crashed.")


async def confirm_delete(call: Call) -> types.CallToolResult:
    await anyio.sleep(WORK_SECONDS)
    filename = call.arguments.get("filename", "")
    answers = await call.ask({"confirm": _elicit(f"Delete {filename}?", {"confirm": {"type": "boolean"}})}, state={})
    return _text(f"Deleted {filename}." if _field(answers["confirm"], "confirm") else f"Kept {filename}.")


async def multi_input(call: Call) -> types.CallToolResult:
    await anyio.sleep(WORK_SECONDS)
    answers = await call.ask(
        {
            "name": _elicit("Your name?", {"name": {"type": "string"}}),
            "confirm": _elicit("Go on?", {"confirm": {"type": "boolean"}}),
        },
        state={},
    )
    return _text(f"{_field(answers['name'], 'name')} confirmed={_field(answers['confirm'], 'confirm')}")


async def tool_with_task(call: Call) -> types.CallToolResult:
    """Asks at once (a multi round-trip question), then works long enough to become a task."""
    answers = await call.ask({"user_name": _elicit("What is your name?", {"name": {"type": "string"}})}, state={})
    await anyio.sleep(WORK_SECONDS)
    return _text(f"Hello, {_field(answers['user_name'], 'name')}!")


def task_fixtures() -> dict[str, tuple[Handler, str]]:
    """The tasks scenarios' tools by name, with their descriptions."""
    return {
        "greet": (greet, "Says hello at once (sync-only)."),
        "slow_compute": (slow_compute, "Works `seconds` seconds, then answers."),
        "failing_job": (failing_job, "Works a second, then reports a tool error."),
        "protocol_error_job": (protocol_error_job, "Works a second, then fails with a JSON-RPC error."),
        "confirm_delete": (confirm_delete, "Works a second, then asks to confirm a deletion."),
        "multi_input": (multi_input, "Works a second, then asks two questions at once."),
        "test_tool_with_task": (tool_with_task, "Asks a name, then works a second and greets."),
    }


def install_tasks(server: Server[Any]) -> TasksExtension:
    """Serve the tasks extension on `server`, which has its tools/call handler; run the extension it returns
    (`running()`) while the server is served."""
    entry = server.get_request_handler("tools/call")
    if entry is None:
        raise RuntimeError("the conformance server has no tools/call handler to serve tasks for")
    # Below the extension: it hands a declaring caller's call down inside its task, every other call directly.
    server.add_request_handler("tools/call", types.CallToolRequestParams, _refusing_untasked(entry.handler))
    extension = TasksExtension(TASKS)
    extension.install(server)
    for method in ("tools/call", "tasks/get", "tasks/update", "tasks/cancel"):
        _as_suite(server, method)
    return extension


def _refusing_untasked(inner: ToolCall) -> ToolCall:
    """`inner`, refusing with -32021 a 2026-07-28 call of a `REQUIRED_TASK_TOOLS` tool that does not declare tasks
    (2025-11-25 sessions, which are served no tasks, are answered when the call ends)."""

    async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> HandlerResult:
        declared = declares_tasks(ctx.meta) or declares_tasks(params.meta)
        if params.name in REQUIRED_TASK_TOOLS and ctx.protocol_version in MODERN_PROTOCOL_VERSIONS and not declared:
            raise MCPError(
                types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                f"Tool '{params.name}' runs only as a task: declare the '{EXTENSION}' extension in the request's "
                "client capabilities to call it.",
                {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
            )
        return await inner(ctx, params)

    return call_tool


def _as_suite(server: Server[Any], method: str) -> None:
    """Serve `method` as `SUITE`: the extension makes and finds tasks only for a known principal."""
    entry = server.get_request_handler(method)
    if entry is None:
        raise RuntimeError(f"the conformance server has no {method} handler")
    inner = entry.handler

    async def handler(ctx: Context, params: Any) -> HandlerResult:
        token = current_principal.set(SUITE)
        try:
            return await inner(ctx, params)
        finally:
            current_principal.reset(token)

    server.add_request_handler(method, entry.params_type, handler)


def _object(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


TASK_SCHEMAS: dict[str, dict[str, Any]] = {
    "greet": _object(name={"type": "string"}),
    "slow_compute": _object(seconds={"type": "number"}, label={"type": "string"}),
    "confirm_delete": _object(filename={"type": "string"}),
}
"""The arguments of the tasks scenarios' tools that take any."""
