"""A gateway task on an upstream that serves tasks itself runs as the upstream's own task: the result comes from
the upstream's task, a cancel reaches it, its questions are relayed both ways, and its id never reaches the caller."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from aggregator.tasks.task import EXTENSION
from tests.harness import LiveGateway, serve_upstreams
from tests.policies import ADMIN_SCOPES
from tests.tasks.own_tasks import UPSTREAM_SECRET, Seen, serve_tasking
from tests.tasks.upstream import Signals
from tests.tasks.wire import DEADLINE, caller, legacy_session, settled, started_call, task_of

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def tasking() -> AsyncIterator[tuple[str, Seen]]:
    async with serve_tasking() as served:
        yield served


@pytest.fixture(scope="module")
async def through(
    tmp_path_factory: pytest.TempPathFactory, tasking: tuple[str, Seen], gated: tuple[str, Signals]
) -> AsyncIterator[LiveGateway]:
    """A gateway in front of the tasking upstream (and the gated one, which serves no tasks)."""
    directory = tmp_path_factory.mktemp("through")
    upstreams = {"tasking": tasking[0], "gated": gated[0]}
    async with serve_upstreams(directory, upstreams, scopes=ADMIN_SCOPES, tasks={"answer_within": 0}) as live:
        yield live


@pytest.fixture
def seen(tasking: tuple[str, Seen]) -> Seen:
    return tasking[1]


async def test_a_task_runs_as_the_upstreams_own_task_and_returns_its_result(through: LiveGateway, seen: Seen) -> None:
    async with caller(through, "alice") as alice:
        created = await started_call(alice, "tasking__work", seen.started, "own")
        working = await alice.result("tasks/get", {"taskId": created["taskId"]})
        seen.release["own"].set()
        await settled(task_of(through, "alice", str(created["taskId"])))
        done = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert ("work", True) in seen.calls  # the upstream got a task-augmented call
    upstream_id = seen.task_ids[-1]
    assert created["resultType"] == "task" and created["taskId"] != upstream_id
    assert working["status"] == "working"
    assert done["status"] == "completed"
    assert done["result"]["content"] == [{"type": "text", "text": "worked own"}]
    for answer in (created, working, done):
        assert upstream_id not in json.dumps(answer)  # the caller only ever sees the gateway's task
        assert UPSTREAM_SECRET not in json.dumps(answer)


async def test_cancelling_the_gateway_task_cancels_the_upstream_task(through: LiveGateway, seen: Seen) -> None:
    async with caller(through, "alice") as alice:
        created = await started_call(alice, "tasking__work", seen.started, "stop")
        await alice.result("tasks/cancel", {"taskId": created["taskId"]})
        with anyio.fail_after(DEADLINE):
            await seen.task_cancels["stop"].wait()  # the upstream got tasks/cancel for its task
            await seen.cancelled["stop"].wait()  # and its tool's work stopped
        after = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert after["status"] == "cancelled"


async def test_the_upstreams_questions_are_relayed_both_ways(through: LiveGateway, seen: Seen) -> None:
    async with caller(through, "alice", elicitation={}) as alice:
        created = await alice.result("tools/call", {"name": "tasking__confirm", "arguments": {"label": "deploy"}})
        task = task_of(through, "alice", str(created["taskId"]))
        with anyio.fail_after(DEADLINE):
            while task.status != "input_required":
                await task.settled.wait()
        asked = await alice.result("tasks/get", {"taskId": created["taskId"]})
        (key,) = asked["inputRequests"]
        answer = {key: {"action": "accept", "content": {"ok": True}}}
        await alice.result("tasks/update", {"taskId": created["taskId"], "inputResponses": answer})
        await settled(task)
        done = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert seen.task_updates["deploy"].is_set()  # the answer reached the upstream's task with its tasks/update
    assert ("confirm", True) in seen.calls
    assert asked["status"] == "input_required"
    assert asked["inputRequests"][key]["method"] == "elicitation/create"
    assert asked["inputRequests"][key]["params"]["message"] == "Go on with deploy?"
    assert UPSTREAM_SECRET not in json.dumps(asked)
    assert done["status"] == "completed"
    assert done["result"]["content"][0]["text"] == "deploy: accept True"


async def test_the_upstream_tasks_error_fails_the_gateway_task_naming_the_upstream(through: LiveGateway) -> None:
    async with caller(through, "alice") as alice:
        created = await alice.result("tools/call", {"name": "tasking__crash", "arguments": {}})
        await settled(task_of(through, "alice", str(created["taskId"])))
        failed = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert failed["status"] == "failed"
    assert failed["error"]["message"] == "Upstream 'tasking' returned an error: The crash tool crashed."


async def test_a_call_that_is_no_gateway_task_declares_no_tasks_upstream(through: LiveGateway, seen: Seen) -> None:
    """Only a call the gateway follows as a task may be answered with one: a plain call is plain upstream too."""
    async with caller(through, "alice", declare=False) as plain:
        refused = await plain.error("tools/call", {"name": "tasking__crash", "arguments": {}})
    assert seen.calls[-1] == ("crash", False)
    assert refused["message"] == "Upstream 'tasking' returned an error: The crash tool crashed."


async def test_a_2025_11_25_session_that_declared_tasks_declares_none_upstream(
    through: LiveGateway, seen: Seen
) -> None:
    """The gateway serves that era no tasks, so it cannot follow one: the extension is not relayed upstream."""
    async with legacy_session(through, "alice", {"extensions": {EXTENSION: {}}}) as session:
        refused = await session.error("tools/call", {"name": "tasking__crash", "arguments": {}})
    assert seen.calls[-1] == ("crash", False)
    assert refused["message"] == "Upstream 'tasking' returned an error: The crash tool crashed."


async def test_an_upstream_without_tasks_is_called_as_before(through: LiveGateway) -> None:
    async with caller(through, "alice") as alice:
        created = await alice.result("tools/call", {"name": "gated__echo", "arguments": {"text": "plain"}})
        await settled(task_of(through, "alice", str(created["taskId"])))
        done = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert done["result"]["content"][0]["text"] == "plain"


async def test_another_principal_cannot_reach_a_task_run_upstream(through: LiveGateway, seen: Seen) -> None:
    async with caller(through, "alice") as alice, caller(through, "bob") as bob:
        created = await started_call(alice, "tasking__work", seen.started, "mine")
        refused = [await bob.error(method, {"taskId": created["taskId"]}) for method in ("tasks/get", "tasks/cancel")]
        still = await alice.result("tasks/get", {"taskId": created["taskId"]})
        seen.release["mine"].set()
    assert [error["code"] for error in refused] == [-32602, -32602]
    assert still["status"] == "working"
    assert not seen.task_cancels["mine"].is_set()


async def test_shutting_the_gateway_down_cancels_the_upstream_task(tmp_path: Path, tasking: tuple[str, Seen]) -> None:
    seen = tasking[1]
    async with (
        serve_upstreams(tmp_path, {"tasking": tasking[0]}, scopes=ADMIN_SCOPES, tasks={"answer_within": 0}) as live,
        caller(live, "alice") as alice,
    ):
        await started_call(alice, "tasking__work", seen.started, "shutdown")
    with anyio.fail_after(DEADLINE):
        await seen.task_cancels["shutdown"].wait()
        await seen.cancelled["shutdown"].wait()


async def test_an_upstream_question_within_answer_within_answers_the_caller_with_the_task_at_once(
    tmp_path: Path, tasking: tuple[str, Seen]
) -> None:
    """The caller is not kept waiting for `answer_within` while the upstream's task waits for its answer."""
    seen = tasking[1]
    gateway = serve_upstreams(tmp_path, {"tasking": tasking[0]}, scopes=ADMIN_SCOPES, tasks={"answer_within": 60})
    async with gateway as live, caller(live, "alice", elicitation={}) as alice:
        with anyio.fail_after(DEADLINE):
            created = await alice.result("tools/call", {"name": "tasking__confirm", "arguments": {"label": "soon"}})
        asked = await alice.result("tasks/get", {"taskId": created["taskId"]})
        (key,) = asked["inputRequests"]
        answer = {key: {"action": "decline"}}
        await alice.result("tasks/update", {"taskId": created["taskId"], "inputResponses": answer})
        await settled(task_of(live, "alice", str(created["taskId"])))
        done = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert seen.task_updates["soon"].is_set()
    assert created["resultType"] == "task" and created["status"] == "input_required"
    assert done["result"]["content"][0]["text"] == "soon: decline None"


async def test_a_call_followed_as_an_upstream_task_holds_no_concurrency_slot(
    tmp_path: Path, tasking: tuple[str, Seen]
) -> None:
    """With one call in flight allowed per principal, a principal still runs two upstream tasks side by side:
    the upstream does the work, the gateway only polls (tasks are bounded by tasks.max_tasks_per_principal)."""
    seen = tasking[1]
    limits = {"max_calls_per_principal": 1}
    gateway = serve_upstreams(
        tmp_path, {"tasking": tasking[0]}, scopes=ADMIN_SCOPES, tasks={"answer_within": 0}, limits=limits
    )
    async with gateway as live, caller(live, "alice") as alice:
        first = await started_call(alice, "tasking__work", seen.started, "side-1")
        with anyio.fail_after(DEADLINE):
            await seen.task_polls["side-1"].wait()  # the gateway follows the upstream's task
        second = await started_call(alice, "tasking__work", seen.started, "side-2")
        for label in ("side-1", "side-2"):
            seen.release[label].set()
        for created in (first, second):
            await settled(task_of(live, "alice", str(created["taskId"])))
        done = [await alice.result("tasks/get", {"taskId": created["taskId"]}) for created in (first, second)]
    assert [answer["result"]["content"][0]["text"] for answer in done] == ["worked side-1", "worked side-2"]
