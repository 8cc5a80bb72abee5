"""The SEP-2663 shapes the gateway sends to an upstream's tasks and reads back (`aggregator.upstreams.tasks`).

What the gateway reads is taken loosely (`TaskState`) and checked field by field where it is used,
so that an upstream's fault is named in the error rather than lost in a validation report.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import mcp_types as types
from pydantic import Discriminator, Field, Tag, TypeAdapter

RELATED_TASK_META_KEY = "io.modelcontextprotocol/related-task"
"""Where a result's `_meta` may name its task: removed from what the caller gets."""
MAX_TASK_ID = 1024
"""The longest upstream task id the gateway keeps following."""
STATUSES = frozenset({"working", "input_required", "completed", "failed", "cancelled"})


class TaskParams(types.RequestParams):
    """Params of tasks/get, tasks/update (with `inputResponses`) and tasks/cancel."""

    task_id: str
    input_responses: dict[str, Any] | None = None


class GetTask(types.Request[TaskParams, Literal["tasks/get"]]):
    """tasks/get; `name_param` puts the task id in the `Mcp-Name` header, as SEP-2663 asks of tasks/*."""

    method: Literal["tasks/get"] = "tasks/get"
    params: TaskParams
    name_param = "taskId"


class UpdateTask(types.Request[TaskParams, Literal["tasks/update"]]):
    """tasks/update: the caller's answers to the upstream task's questions."""

    method: Literal["tasks/update"] = "tasks/update"
    params: TaskParams
    name_param = "taskId"


class CancelTask(types.Request[TaskParams, Literal["tasks/cancel"]]):
    """tasks/cancel of a task the gateway no longer follows."""

    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskParams
    name_param = "taskId"


class CreatedTask(types.Result):
    """An upstream's `CreateTaskResult`: the fields the gateway needs to follow the task."""

    result_type: Literal["task"]
    task_id: str = Field(min_length=1, max_length=MAX_TASK_ID)
    poll_interval_ms: Any = None


class TaskState(types.Result):
    """An upstream's answer to tasks/get, taken loosely so that each fault is named where it is read."""

    task_id: Any = None
    status: Any = None
    poll_interval_ms: Any = None
    input_requests: Any = None
    result: Any = None
    error: Any = None


def _result_kind(value: Any) -> str:
    """Which shape a tools/call answer is, by its `resultType` alone (a task with `content` is still a task)."""
    kind = value.get("resultType") if isinstance(value, dict) else getattr(value, "result_type", None)
    return kind if kind in ("task", "input_required") else "complete"


CALL_OR_TASK: TypeAdapter[types.CallToolResult | types.InputRequiredResult | CreatedTask] = TypeAdapter(
    Annotated[
        Annotated[types.CallToolResult, Tag("complete")]
        | Annotated[types.InputRequiredResult, Tag("input_required")]
        | Annotated[CreatedTask, Tag("task")],
        Discriminator(_result_kind),
    ]
)
TASK_STATE = TypeAdapter(TaskState)
QUESTIONS: TypeAdapter[dict[str, types.InputRequest]] = TypeAdapter(dict[str, types.InputRequest])
