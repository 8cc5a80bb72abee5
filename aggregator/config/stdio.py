"""Stdio templates: the only stdio servers a caller may start through register_service.

An operator defines each one in settings (`stdio_templates`): a fixed command line with named
slots, each slot a pattern its value must fully match. A caller names a template and gives a value
per slot; it never gives a command line (`aggregator.tools.checks.fill_template` fills one in).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLOT_REFERENCE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""`{name}` in a stdio template's args: where the caller's value for slot `name` goes."""


class StdioSlot(BaseModel):
    """One value a caller fills in when it registers a stdio template."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = Field(description="A regular expression the whole value must match, e.g. '[a-z0-9-]{1,40}'.")
    description: str = Field(default="", description="What the value means, shown to callers.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"pattern {pattern!r} is not a regular expression: {error}") from None
        return pattern


class StdioTemplate(BaseModel):
    """A stdio server an operator lets callers start: a fixed command line with named slots.

    Each `{slot}` in `args` is replaced by the caller's value, which stays inside its one argument
    (never split, never seen by a shell). Values are never expanded from the environment.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str = Field(min_length=1, description="The executable (a path, or a name looked up on PATH).")
    args: tuple[str, ...] = Field(default=(), description="Arguments; '{slot}' marks where a slot's value goes.")
    slots: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")], StdioSlot] = Field(
        default_factory=dict, description="The values a caller must give, by name."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment of the child (copied into servers.yaml: no secrets)."
    )
    cwd: Path | None = Field(default=None, description="Working directory of the child.")
    description: str = Field(default="", description="What the server does, shown to callers.")

    @model_validator(mode="after")
    def _slots_match(self) -> StdioTemplate:
        used = {name for arg in self.args for name in SLOT_REFERENCE.findall(arg)}
        if unknown := sorted(used - self.slots.keys()):
            raise ValueError(f"args use undefined slots: {', '.join(unknown)}")
        if unused := sorted(self.slots.keys() - used):
            raise ValueError(f"slots not used in args: {', '.join(unused)}")
        return self
