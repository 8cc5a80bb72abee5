"""What the agent and its model say to each other, independent of any LLM API.

A conversation is a list of entries: the user's task, the model's turns (text and tool calls) and
the results of those calls. Each backend (`bedrock`, `anthropic_api`, `scripted`) maps it to its
own API; `Model` is the seam.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: its gateway name, what it does and its JSON Schema input."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """The model asks for one tool call; `id` pairs it with its result."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class UserMessage:
    text: str


@dataclass(frozen=True)
class ModelTurn:
    """One answer of the model: text, tool calls, or both. No tool calls means: this is the answer."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class ToolResult:
    """What one tool call returned (JSON: structured content, or text) and whether it failed."""

    call_id: str
    name: str
    content: Any
    is_error: bool = False

    def as_text(self) -> str:
        return self.content if isinstance(self.content, str) else json.dumps(self.content, ensure_ascii=False)


@dataclass(frozen=True)
class ToolResults:
    """The results of every tool call of the previous model turn, in order."""

    results: tuple[ToolResult, ...]


Entry: TypeAlias = UserMessage | ModelTurn | ToolResults


class Model(Protocol):
    """An LLM that, given the conversation so far and the tools on offer, takes the next turn."""

    async def respond(self, system: str, conversation: Sequence[Entry], tools: Sequence[ToolSpec]) -> ModelTurn: ...
