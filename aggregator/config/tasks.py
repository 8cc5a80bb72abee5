"""The `tasks` settings section: the 2026-07-28 tasks extension (SEP-2663) the gateway serves for every tool."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ServerName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
ToolPattern = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class TasksSettings(BaseModel):
    """How long calls become tasks, and the bounds on what the gateway keeps for them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Serve io.modelcontextprotocol/tasks to 2026-07-28 callers that declare it; false: every call "
        "is answered when it ends, as for other callers.",
    )
    answer_within: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="Seconds a call of a declaring caller may take before the gateway answers with a task (the call "
        "goes on in the background); a faster call is answered directly. 0: every such call becomes a task.",
    )
    ttl: float = Field(
        default=3600.0, gt=0, le=7 * 86400, description="Seconds a task is kept from its creation (its ttlMs)."
    )
    poll_interval: float = Field(
        default=1.0, gt=0, le=3600, description="Seconds callers are asked to wait between polls."
    )
    max_tasks_per_principal: int = Field(default=64, gt=0, description="Tasks one principal may hold at once.")
    max_tasks: int = Field(default=10_000, gt=0, description="Tasks kept for all principals together.")
    max_result_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Largest result one task keeps; a larger one fails the task."
    )
    max_stored_bytes: int = Field(
        default=256 * 1024 * 1024,
        gt=0,
        description="Results kept for all tasks together; the oldest finished tasks are dropped to make room.",
    )
    required: dict[ServerName, tuple[ToolPattern, ...]] = Field(
        default_factory=dict,
        description="Tools that run only as tasks (SEP-2663 taskSupport 'required'), by server: its tools' own names "
        "or `*` patterns. A 2026-07-28 caller that does not declare io.modelcontextprotocol/tasks is refused with "
        "-32021; 2025-11-25 sessions, which the gateway serves no tasks, are answered when the call ends. The "
        "2026-07-28 wire cannot carry an upstream's taskSupport, so the operator says it here.",
    )

    stream_hold: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="For 2025-11-25 sessions (served no tasks): seconds a tools/call's SSE stream stays open before "
        "the gateway closes it; the call goes on and the caller resumes with Last-Event-ID (SEP-1699), through "
        "proxies that cut long responses. 0: every answer comes on a resumed stream. Unset: held until answered.",
    )

    def requires_task(self, server: str, tool: str) -> bool:
        """Whether `server`'s tool `tool` (its own name) runs only as a task (and tasks are served at all)."""
        patterns = self.required.get(server, ()) if self.enabled else ()
        return any(fnmatchcase(tool, pattern) for pattern in patterns)
