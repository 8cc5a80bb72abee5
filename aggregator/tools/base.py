"""The shape of one admin tool: arguments model, UI permission, and what it does."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import mcp_types as types
from pydantic import BaseModel, ConfigDict

from aggregator.policy.principal import Principal

Permission = Literal["list_service", "register_service", "toggle_service", "modify_service", "health_check_service"]


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArguments(Arguments):
    pass


@dataclass(frozen=True, slots=True)
class AdminTool:
    """One management tool: its arguments model, the UI permission it needs, and what it does."""

    name: str
    description: str
    arguments: type[Arguments]
    permission: Permission | None
    run: Callable[[Principal, Any], Awaitable[Any]]

    def tool(self) -> types.Tool:
        """The MCP tool callers see (built once: `tools/list` asks for it on every request)."""
        return _tool(self.name, self.description, self.arguments, self.permission in (None, "list_service"))


@functools.cache
def _tool(name: str, description: str, arguments: type[Arguments], read_only: bool) -> types.Tool:
    schema = arguments.model_json_schema()
    schema.pop("title", None)
    return types.Tool(
        name=name,
        description=description,
        input_schema=schema,
        annotations=types.ToolAnnotations(read_only_hint=read_only),
    )
