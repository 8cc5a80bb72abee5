"""Who gets tasks: a 2026-07-28 caller that declares the extension (a fast call is still answered directly);
a 2025-11-25 session never does (its calls are answered when they end, and the task methods are unknown)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from aggregator.tasks.task import EXTENSION
from tests.harness import LiveGateway, serve_upstreams
from tests.policies import ADMIN_SCOPES
from tests.tasks.upstream import Signals
from tests.tasks.wire import DEADLINE, caller, legacy_session

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def patient(tmp_path_factory: pytest.TempPathFactory, gated: tuple[str, Signals]) -> AsyncIterator[LiveGateway]:
    """A gateway that waits up to 30 s for a call before answering with a task."""
    directory = tmp_path_factory.mktemp("patient")
    async with serve_upstreams(
        directory, {"gated": gated[0]}, scopes=ADMIN_SCOPES, tasks={"answer_within": 30}
    ) as live:
        yield live


async def test_the_extension_is_advertised_on_discover(live: LiveGateway) -> None:
    async with caller(live, "alice") as alice:
        discovered = await alice.result("server/discover", {})
    assert discovered["capabilities"]["extensions"][EXTENSION] == {}
    assert "tasks" not in discovered["capabilities"]


async def test_a_call_that_ends_within_answer_within_is_answered_directly(patient: LiveGateway) -> None:
    async with caller(patient, "alice") as alice:
        answered = await alice.result("tools/call", {"name": "gated__echo", "arguments": {"text": "quick"}})
    assert answered["resultType"] == "complete" and "taskId" not in answered
    assert answered["content"][0]["text"] == "quick"
    assert patient.gateway.tasks is not None and len(patient.gateway.tasks.store) == 0


async def test_a_call_that_outlasts_answer_within_becomes_a_task(live: LiveGateway, signals: Signals) -> None:
    """With `answer_within: 0` the same quick tool is a task: the gateway, not the tool, decides."""
    async with caller(live, "alice") as alice:
        created = await alice.result("tools/call", {"name": "gated__echo", "arguments": {"text": "quick"}})
    assert created["resultType"] == "task"


async def test_a_2025_11_25_session_gets_plain_calls_and_no_task_methods(live: LiveGateway, signals: Signals) -> None:
    capabilities: dict[str, Any] = {"extensions": {EXTENSION: {}}}  # declared, yet not served in this era
    assert live.gateway.tasks is not None
    held = len(live.gateway.tasks.store)
    async with legacy_session(live, "alice", capabilities) as session:
        plain = await session.result(
            "tools/call", {"name": "gated__echo", "arguments": {"text": "old"}, "task": {"ttl": 60_000}}
        )
        refused = await session.error("tasks/get", {"taskId": "anything"})
        async with anyio.create_task_group() as group:
            group.start_soon(session.result, "tools/call", {"name": "gated__slow", "arguments": {"label": "legacy"}})
            with anyio.fail_after(DEADLINE):
                await signals.started["legacy"].wait()
            assert len(live.gateway.tasks.store) == held  # no task behind it
            signals.release["legacy"].set()
    assert "extensions" not in session.initialized["capabilities"]  # not advertised in this era
    assert plain["content"][0]["text"] == "old" and "taskId" not in plain and "task" not in plain
    assert refused["code"] == -32601


async def test_with_tasks_disabled_no_caller_gets_a_task(
    tmp_path_factory: pytest.TempPathFactory, gated: tuple[str, Signals]
) -> None:
    directory = tmp_path_factory.mktemp("no-tasks")
    settings = {"tasks": {"enabled": False, "answer_within": 0}}
    gateway = serve_upstreams(directory, {"gated": gated[0]}, scopes=ADMIN_SCOPES, **settings)
    async with gateway as off, caller(off, "alice") as alice:
        discovered = await alice.result("server/discover", {})
        answered = await alice.result("tools/call", {"name": "gated__echo", "arguments": {"text": "plain"}})
        unknown = await alice.error("tasks/get", {"taskId": "anything"})
    assert EXTENSION not in discovered["capabilities"].get("extensions", {})
    assert answered["resultType"] == "complete" and answered["content"][0]["text"] == "plain"
    assert unknown["code"] == -32601


async def test_a_caller_that_leaves_before_it_is_answered_leaves_no_task_behind(
    patient: LiveGateway, signals: Signals
) -> None:
    """Nobody could ever ask for a task whose id was never sent: the call is cancelled upstream and forgotten."""
    async with caller(patient, "alice") as alice, anyio.create_task_group() as group:
        group.start_soon(alice.request, "tools/call", {"name": "gated__slow", "arguments": {"label": "left"}})
        with anyio.fail_after(DEADLINE):
            await signals.started["left"].wait()
        group.cancel_scope.cancel()  # the caller hangs up within answer_within
    with anyio.fail_after(DEADLINE):
        await signals.cancelled["left"].wait()
    assert patient.gateway.tasks is not None and len(patient.gateway.tasks.store) == 0
