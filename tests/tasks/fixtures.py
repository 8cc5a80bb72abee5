"""The tools the conformance suite's `tasks-*` scenarios call, for tests/servers/conformance_server.py.

The fixture upstream implements no tasks itself: the gateway makes the tasks (any call of a declaring
2026-07-28 caller that outlasts `tasks.answer_within`, 0.5 s by default). So the task-supporting
tools work for a second or more before they answer or ask, and the sync-only `greet` answers at once.
Wiring, in `ConformanceFixtures.__init__`: `served |= task_fixtures()`; at module level:
`INPUT_SCHEMAS |= TASK_SCHEMAS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError

WORK_SECONDS = 1.0
"""How long the task-supporting tools work first: twice the gateway's default `tasks.answer_within`."""


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


def _object(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


TASK_SCHEMAS: dict[str, dict[str, Any]] = {
    "greet": _object(name={"type": "string"}),
    "slow_compute": _object(seconds={"type": "number"}, label={"type": "string"}),
    "confirm_delete": _object(filename={"type": "string"}),
}
"""The arguments of the tasks scenarios' tools that take any."""
