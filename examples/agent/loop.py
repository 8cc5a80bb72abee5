"""The agent loop: the model starts with one tool, `intelligent_tool_finder`, and grows its toolbox.

Each turn the model sees the tools discovered so far. A finder call adds the callable tools it
found; a call to any other tool goes to the gateway only if that tool was discovered, so the model
cannot reach past what the gateway let it find. A turn without tool calls is the answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from examples.agent.conversation import (
    Entry,
    Model,
    ModelTurn,
    ToolCall,
    ToolResult,
    ToolResults,
    ToolSpec,
    UserMessage,
)
from examples.agent.errors import AgentError
from examples.agent.gateway import FINDER, FINDER_SPEC, GatewayTools

SYSTEM_PROMPT = (
    "You are an agent connected to an MCP gateway that fronts many tools. You start with a single tool, "
    f"{FINDER}: describe what you need and it returns matching tools with their input schemas. Those tools "
    "are then yours to call by name. Find, call, and answer the user's task briefly from the tools' results; "
    "do not invent data the tools did not return."
)
DEFAULT_MAX_STEPS = 8
_SHOWN_ARGUMENTS = 120  # characters of a call's arguments shown in the progress lines


async def run_agent(
    task: str,
    model: Model,
    gateway: GatewayTools,
    *,
    report: Callable[[str], None],
    max_steps: int = DEFAULT_MAX_STEPS,
) -> str:
    """Work on `task` until the model answers; return the answer. `report` gets one line per step."""
    conversation: list[Entry] = [UserMessage(task)]
    toolbox: dict[str, ToolSpec] = {FINDER: FINDER_SPEC}
    for step in range(1, max_steps + 1):
        turn: ModelTurn = await model.respond(SYSTEM_PROMPT, conversation, list(toolbox.values()))
        conversation.append(turn)
        if not turn.tool_calls:
            return turn.text
        results = []
        for call in turn.tool_calls:
            result = await _execute(call, toolbox, gateway)
            report(f"step {step}: {call.name}({_shown(call.arguments)}) -> {_summary(result)}")
            results.append(result)
        conversation.append(ToolResults(tuple(results)))
    raise AgentError(f"The model gave no answer within {max_steps} steps.")


async def _execute(call: ToolCall, toolbox: dict[str, ToolSpec], gateway: GatewayTools) -> ToolResult:
    if call.name == FINDER:
        query = call.arguments.get("query")
        top_k = call.arguments.get("top_k", 5)
        if not isinstance(query, str) or not isinstance(top_k, int):
            return ToolResult(call.id, call.name, {"error": "query must be a string and top_k an integer"}, True)
        discovery = await gateway.find(query, top_k)
        for found in discovery.tools:
            if found.callable:
                toolbox[found.name] = found.spec()
        return ToolResult(call.id, call.name, discovery.model_dump(mode="json"))
    if call.name not in toolbox:
        refusal = f"Tool '{call.name}' has not been discovered; find it with {FINDER} first."
        return ToolResult(call.id, call.name, {"error": refusal}, is_error=True)
    outcome = await gateway.call(call.name, call.arguments)
    return ToolResult(call.id, call.name, outcome.content, outcome.is_error)


def _shown(arguments: dict[str, Any]) -> str:
    text = ", ".join(f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in arguments.items())
    return text if len(text) <= _SHOWN_ARGUMENTS else text[: _SHOWN_ARGUMENTS - 3] + "..."


def _summary(result: ToolResult) -> str:
    if result.is_error:
        return f"error: {result.as_text()[:200]}"
    if result.name == FINDER and isinstance(result.content, dict):
        names = [tool["name"] for tool in result.content.get("tools", [])]
        return f"{len(names)} tools ({result.content.get('mode')}): {', '.join(names) or 'none'}"
    return "ok"
