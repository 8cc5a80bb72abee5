"""The task store's bounds, each named by its setting: TTL, tasks per principal and in all, result sizes.

The store is the real one; only its clock is a number the test moves (a TTL is waited for, not slept).
"""

from __future__ import annotations

import anyio
import mcp_types as types
import pytest
from pydantic import ValidationError

from aggregator.config.tasks import TasksSettings
from aggregator.tasks.store import TaskStore
from aggregator.tasks.task import TaskLimitError, UnknownTaskError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(clock: Clock | None = None, **settings: object) -> TaskStore:
    return TaskStore(TasksSettings.model_validate(settings), clock or Clock())


def text(size: int) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text="x" * size)])


def test_a_task_is_kept_for_its_ttl_and_then_reads_as_unknown() -> None:
    clock = Clock()
    tasks = store(clock, ttl=60)
    task = tasks.create("alice", "gated__slow")
    clock.now += 59.9
    assert tasks.get(task.task_id, "alice") is task
    assert task.ttl_ms == 60_000 and task.created()["ttlMs"] == 60_000
    clock.now += 0.1
    with pytest.raises(UnknownTaskError, match="never existed, has expired, or is not yours"):
        tasks.get(task.task_id, "alice")
    assert len(tasks) == 0


@pytest.mark.anyio
async def test_an_expired_running_task_is_cancelled() -> None:
    clock = Clock()
    tasks = store(clock, ttl=1)
    task = tasks.create("alice", "gated__slow")
    task.cancel_scope = anyio.CancelScope()
    clock.now += 2
    tasks.purge()
    assert task.cancel_scope.cancel_called


def test_another_owner_gets_the_answer_an_unknown_id_gets() -> None:
    tasks = store()
    task = tasks.create("alice", "gated__slow")
    with pytest.raises(UnknownTaskError) as theirs:
        tasks.get(task.task_id, "bob")
    with pytest.raises(UnknownTaskError) as unknown:
        tasks.get("no-such-task", "bob")
    assert str(theirs.value) == str(unknown.value).replace("no-such-task", task.task_id)


def test_a_principal_holds_a_bounded_number_of_tasks_the_oldest_finished_make_room() -> None:
    tasks = store(max_tasks_per_principal=2)
    first, second = tasks.create("alice", "t"), tasks.create("alice", "t")
    with pytest.raises(TaskLimitError, match=r"tasks\.max_tasks_per_principal"):
        tasks.create("alice", "t")
    tasks.create("bob", "t")  # others are not held back by alice
    tasks.complete(first, text(1))
    first.detached = second.detached = True
    third = tasks.create("alice", "t")
    with pytest.raises(UnknownTaskError):
        tasks.get(first.task_id, "alice")
    assert tasks.get(third.task_id, "alice") is third


def test_the_gateway_holds_a_bounded_number_of_tasks() -> None:
    tasks = store(max_tasks=2)
    tasks.create("alice", "t")
    tasks.create("bob", "t")
    with pytest.raises(TaskLimitError, match=r"tasks\.max_tasks\b"):
        tasks.create("carol", "t")


def test_a_result_over_max_result_bytes_fails_its_task_saying_why() -> None:
    tasks = store(max_result_bytes=100)
    task = tasks.create("alice", "gated__big")
    tasks.complete(task, text(500))
    assert task.status == "failed" and task.result is None
    assert task.error is not None and "tasks.max_result_bytes" in task.error["message"]
    assert "'gated__big'" in task.error["message"]


def test_results_over_max_stored_bytes_drop_the_oldest_finished_tasks() -> None:
    tasks = store(max_stored_bytes=1000, max_result_bytes=1000)
    old, new = tasks.create("alice", "t"), tasks.create("bob", "t")
    tasks.complete(old, text(600))
    tasks.complete(new, text(600))
    assert tasks.get(new.task_id, "bob").status == "completed"
    with pytest.raises(UnknownTaskError):
        tasks.get(old.task_id, "alice")
    assert tasks.stored_bytes <= 1000


def test_settings_refuse_unbounded_values() -> None:
    for bad in ({"ttl": 0}, {"ttl": 10**9}, {"answer_within": -1}, {"max_tasks": 0}, {"max_result_bytes": 0}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            TasksSettings.model_validate(bad)
