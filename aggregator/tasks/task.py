"""One task: the state of a call that outlives its request, and the wire shapes SEP-2663 gives it.

A `Task` belongs to one owner (a principal's issuer and subject) and moves `working` ->
(`input_required` -> `working`)* -> `completed` | `failed` | `cancelled`. Terminal states never
change. `settled` fires on every change a waiting caller cares about, so nothing polls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from pydantic import BaseModel

from aggregator.config.tasks import TasksSettings
from aggregator.errors import GatewayError, LimitExceededError, MissingCapabilityError
from aggregator.upstreams.tasks import EXTENSION as EXTENSION  # the one identifier, also sent upstream

Status = Literal["working", "input_required", "completed", "failed", "cancelled"]
TERMINAL: frozenset[Status] = frozenset({"completed", "failed", "cancelled"})


class UnknownTaskError(GatewayError):
    """Raised for a task id the caller does not own: never created, expired, dropped, or another principal's.

    All four read alike, so a caller learns nothing about other principals' tasks.
    """

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        shown = task_id if len(task_id) <= 64 else task_id[:64] + "..."
        super().__init__(f"Unknown task '{shown}': it never existed, has expired, or is not yours.")


class TaskLimitError(LimitExceededError):
    """Raised when a principal already holds `tasks.max_tasks_per_principal` tasks, none of them finished,
    or the gateway holds `tasks.max_tasks` unfinished tasks."""


class TaskRequiredError(MissingCapabilityError):
    """Raised when a 2026-07-28 caller that did not declare the tasks extension calls a tool that runs only
    as a task (`tasks.required`); the caller sees -32021 naming the extension (SEP-2663)."""

    def __init__(self, tool: str) -> None:
        self.capability = "extensions"
        self.tool = tool
        GatewayError.__init__(
            self,
            f"Tool '{tool}' runs only as a task: declare the '{EXTENSION}' extension in the request's client "
            "capabilities to call it.",
        )

    @property
    def required_capabilities(self) -> dict[str, Any]:
        return {"extensions": {EXTENSION: {}}}


def now_iso() -> str:
    """The wall-clock time as ISO 8601 (UTC, `Z`), as tasks carry it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class Task:
    """A call in the background and what it produced; the store owns these, the runner changes them."""

    task_id: str
    owner: str
    tool: str
    expires_at: float
    """When the store drops it (its clock: `TaskStore.clock`)."""
    ttl_ms: int
    poll_interval_ms: int
    created_at: str = field(default_factory=now_iso)
    updated_at: str = ""
    status: Status = "working"
    status_message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] = field(default_factory=dict)
    """Outstanding questions (wire form), by key; keys are unique over the task's life."""
    answers: dict[str, Any] = field(default_factory=dict)
    """Answers received for the current round, by key."""
    rounds: int = 0
    """Rounds of questions so far (it numbers their keys)."""
    size: int = 0
    """Bytes of `result` or `error` as stored (counted against `tasks.max_stored_bytes`)."""
    detached: bool = False
    """The caller was answered with the task: outcomes stay here for tasks/get."""
    immediate: types.CallToolResult | types.InputRequiredResult | None = None
    """An outcome reached before the caller was answered: given to it directly."""
    cancel_scope: anyio.CancelScope | None = None
    on_change: Callable[[Task], None] | None = None
    """Told of every status change (the replica mirroring the task for the others, `aggregator.tasks.shared`)."""
    settled: anyio.Event = field(default_factory=anyio.Event)
    answered: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        self.updated_at = self.updated_at or self.created_at

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def move(self, status: Status, message: str | None = None) -> None:
        """Change the status (never out of a terminal one) and wake whoever waits on it."""
        if self.terminal:
            return
        self.status = status
        self.status_message = message
        self.updated_at = now_iso()
        if status != "input_required":
            self.input_requests = {}
        self.settled.set()
        self.settled = anyio.Event()
        if self.on_change is not None:
            self.on_change(self)

    def base(self) -> dict[str, Any]:
        """The `Task` fields every shape carries (camelCase wire names)."""
        shape: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.updated_at,
            "ttlMs": self.ttl_ms,
            "pollIntervalMs": self.poll_interval_ms,
        }
        if self.status_message is not None:
            shape["statusMessage"] = self.status_message
        return shape

    def created(self) -> dict[str, Any]:
        """The `CreateTaskResult` a tools/call answers with: flat, `resultType: "task"`, no payload."""
        return {"resultType": "task", **self.base()}

    def detailed(self) -> dict[str, Any]:
        """The `DetailedTask` tasks/get answers with: the payload of the current status inlined."""
        shape = {"resultType": "complete", **self.base()}
        if self.status == "input_required":
            shape["inputRequests"] = dict(self.input_requests)
        elif self.status == "completed" and self.result is not None:
            shape["result"] = self.result
        elif self.status == "failed" and self.error is not None:
            shape["error"] = self.error
        return shape


def declares_tasks(meta: Mapping[str, Any] | None) -> bool:
    """Whether a request's `_meta` declares the tasks extension among its per-request client capabilities."""
    capabilities = meta.get(types.CLIENT_CAPABILITIES_META_KEY) if meta else None
    if isinstance(capabilities, BaseModel):
        capabilities = capabilities.model_dump(by_alias=True, exclude_none=True)
    extensions = capabilities.get("extensions") if isinstance(capabilities, Mapping) else None
    return isinstance(extensions, Mapping) and EXTENSION in extensions


class Request(Protocol):
    """What `refused_without_task` reads of a downstream request (`aggregator.upstreams.caller.Caller`)."""

    @property
    def context(self) -> ServerRequestContext[Any, Any]: ...

    @property
    def modern(self) -> bool: ...


def require_task(settings: TasksSettings, server: str, tool: str, name: str, request: Request | None) -> None:
    """Refuse (`TaskRequiredError`) a call of `server`'s `tool`, exported as `name`, that must run as a task and
    is not one (`tasks.required`, `refused_without_task`)."""
    if settings.requires_task(server, tool) and refused_without_task(request):
        raise TaskRequiredError(name)


def refused_without_task(request: Request | None) -> bool:
    """Whether a tool that runs only as a task must be refused in `request`: a 2026-07-28 request that does not
    declare the extension, or none at all. 2025-11-25 sessions, which the gateway serves no tasks, are answered
    when the call ends; a declaring request's call runs as a task (the extension wraps tools/call)."""
    if request is None:
        return True
    return request.modern and not declares_tasks(request.context.meta)
