"""What servers.yaml says about an openapi upstream's operations: route maps, and whether a spec is a URL."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"]


class RouteMapEntry(BaseModel):
    """One of fastmcp's route maps: the operations it matches become tools, resources, resource templates or nothing.

    The first entry that matches an operation decides; an operation no entry matches becomes a tool.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    methods: tuple[HttpMethod, ...] | Literal["*"] = "*"
    pattern: str = Field(default=".*", description="A regular expression searched for in the operation's path.")
    tags: tuple[str, ...] = Field(default=(), description="Matches only operations that carry every one of these tags.")
    mcp_type: Literal["tool", "resource", "resource_template", "exclude"]

    @field_validator("pattern")
    @classmethod
    def _regular_expression(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"'{pattern}' is not a regular expression: {error}") from None
        return pattern


def spec_is_url(spec: str) -> bool:
    """Whether an openapi upstream's `spec` is a URL (else it is a file path)."""
    return re.match(r"^https?://", spec, re.IGNORECASE) is not None
