"""The Anthropic Messages API as the agent's model (the `anthropic` package: `pip install '.[agent]'`).

The client reads `ANTHROPIC_API_KEY` (and `ANTHROPIC_BASE_URL`) from the environment unless one is
passed in. `messages_request` and `parse_message` are the whole mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anthropic
from anthropic.types import Message, MessageParam, ToolParam, ToolResultBlockParam

from examples.agent.conversation import Entry, ModelTurn, ToolCall, ToolResults, ToolSpec, UserMessage
from examples.agent.errors import ModelError

DEFAULT_MODEL = "claude-sonnet-4-6"


class AnthropicModel:
    """Takes turns with a Claude model through `messages.create`."""

    def __init__(self, model: str, *, client: anthropic.AsyncAnthropic | None = None, max_tokens: int = 1024) -> None:
        self._model = model
        self._client = client or anthropic.AsyncAnthropic()
        self._max_tokens = max_tokens

    async def respond(self, system: str, conversation: Sequence[Entry], tools: Sequence[ToolSpec]) -> ModelTurn:
        try:
            message = await self._client.messages.create(
                model=self._model,
                max_tokens=self._max_tokens,
                system=system,
                messages=messages_request(conversation),
                tools=tools_request(tools),
            )
        except anthropic.APIError as error:
            raise ModelError(f"The Anthropic API failed for {self._model}: {error.message}") from None
        return parse_message(message)


def tools_request(tools: Sequence[ToolSpec]) -> list[ToolParam]:
    return [
        {"name": tool.name, "description": tool.description, "input_schema": {**tool.input_schema, "type": "object"}}
        for tool in tools
    ]


def messages_request(conversation: Sequence[Entry]) -> list[MessageParam]:
    """The `messages` of a Messages API request for this conversation."""
    messages: list[MessageParam] = []
    for entry in conversation:
        if isinstance(entry, UserMessage):
            messages.append({"role": "user", "content": entry.text})
        elif isinstance(entry, ToolResults):
            results: list[ToolResultBlockParam] = [
                {"type": "tool_result", "tool_use_id": r.call_id, "content": r.as_text(), "is_error": r.is_error}
                for r in entry.results
            ]
            messages.append({"role": "user", "content": results})
        else:
            content: list[Any] = [{"type": "text", "text": entry.text}] if entry.text else []
            content += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in entry.tool_calls
            ]
            messages.append({"role": "assistant", "content": content})
    return messages


def parse_message(message: Message) -> ModelTurn:
    """The model's turn in a Messages API answer."""
    text = "".join(block.text for block in message.content if block.type == "text")
    calls = tuple(
        ToolCall(block.id, block.name, dict(block.input) if isinstance(block.input, dict) else {})
        for block in message.content
        if block.type == "tool_use"
    )
    return ModelTurn(text, calls)
