"""An upstream whose own tasks misbehave cannot break the gateway's bounds: garbage, an unknown status, a huge
result or a task that never ends each end the gateway task cleanly, naming the upstream, and other callers
go on as before."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from tests.harness import LiveGateway, serve_upstreams
from tests.policies import ADMIN_SCOPES
from tests.tasks.own_tasks import Seen, serve_liar
from tests.tasks.upstream import Signals
from tests.tasks.wire import DEADLINE, caller, settled, task_of

pytestmark = pytest.mark.anyio

TTL = 3.0
"""The gateway's `tasks.ttl` here: the endless upstream task is ended by it, well within `DEADLINE`."""


@pytest.fixture(scope="module")
async def liar() -> AsyncIterator[tuple[str, Seen]]:
    async with serve_liar() as served:
        yield served


@pytest.fixture(scope="module")
async def wary(
    tmp_path_factory: pytest.TempPathFactory, liar: tuple[str, Seen], gated: tuple[str, Signals]
) -> AsyncIterator[LiveGateway]:
    """A gateway in front of the liar and the honest gated upstream; tasks live `TTL` s, results up to 1000 bytes."""
    directory = tmp_path_factory.mktemp("wary")
    tasks = {"answer_within": 0, "max_result_bytes": 1000, "ttl": TTL}
    async with serve_upstreams(
        directory, {"liar": liar[0], "gated": gated[0]}, scopes=ADMIN_SCOPES, tasks=tasks
    ) as live:
        yield live


@pytest.fixture
def seen(liar: tuple[str, Seen]) -> Seen:
    return liar[1]


@pytest.mark.parametrize(
    ("lie", "problem"),
    [
        ("garbage", "Upstream 'liar' sent the state of another task (42) to tasks/get."),
        ("unknown_status", "Upstream 'liar' sent a task with the unknown status 'exploded' to tasks/get."),
        ("upstream_cancelled", "Upstream 'liar' cancelled its task before it produced a result."),
    ],
)
async def test_a_lying_tasks_get_fails_the_gateway_task_naming_the_upstream(
    wary: LiveGateway, seen: Seen, lie: str, problem: str
) -> None:
    async with caller(wary, "alice") as alice:
        created = await alice.result("tools/call", {"name": f"liar__{lie}", "arguments": {}})
        await settled(task_of(wary, "alice", str(created["taskId"])))
        failed = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert (lie, True) in seen.calls
    assert failed["status"] == "failed" and "result" not in failed
    assert failed["error"]["message"] == problem
    if lie != "upstream_cancelled":  # the gateway gave up on a task the upstream may still be running
        with anyio.fail_after(DEADLINE):
            await seen.task_cancels[lie].wait()


async def test_a_huge_upstream_result_fails_the_gateway_task_within_its_bounds(wary: LiveGateway) -> None:
    async with caller(wary, "alice") as alice:
        created = await alice.result("tools/call", {"name": "liar__huge", "arguments": {}})
        await settled(task_of(wary, "alice", str(created["taskId"])))
        failed = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert failed["status"] == "failed" and "result" not in failed
    assert "liar__huge" in failed["error"]["message"] and "tasks.max_result_bytes" in failed["error"]["message"]


async def test_an_upstream_task_that_never_ends_is_ended_by_the_ttl_and_cancelled_upstream(
    wary: LiveGateway, seen: Seen
) -> None:
    """Nobody polls the gateway meanwhile: its own deadline ends the task; other callers are served all along."""
    async with caller(wary, "alice") as alice, caller(wary, "bob") as bob:
        created = await alice.result("tools/call", {"name": "liar__endless", "arguments": {}})
        task = task_of(wary, "alice", str(created["taskId"]))
        others = [
            await bob.result("tools/call", {"name": name, "arguments": arguments})
            for name, arguments in (("gated__echo", {"text": "unaffected"}), ("liar__direct", {}))
        ]
        for other in others:
            await settled(task_of(wary, "bob", str(other["taskId"])))
        answered = [await bob.result("tasks/get", {"taskId": other["taskId"]}) for other in others]
        still = task.status
        await settled(task)
        with anyio.fail_after(DEADLINE):
            await seen.task_cancels["endless"].wait()
        gone = await alice.error("tasks/get", {"taskId": created["taskId"]})
    assert still == "working"
    assert task.status == "cancelled" and task.status_message == "The task's time ran out (tasks.ttl)."
    texts = [answer["result"]["content"][0]["text"] for answer in answered]
    assert texts == ["unaffected", "answered directly"]
    assert gone["code"] == -32602  # expired: the same answer as any unknown task


@pytest.mark.parametrize(
    ("lie", "text"),
    [
        ("overflowing", "fine"),  # a pollIntervalMs no float can hold is bounded, not a crash
        ("disguised", "the real result"),  # a task answer carrying content is followed as the task it says it is
    ],
)
async def test_an_odd_but_usable_upstream_task_is_followed_to_its_result(
    wary: LiveGateway, lie: str, text: str
) -> None:
    async with caller(wary, "alice") as alice:
        created = await alice.result("tools/call", {"name": f"liar__{lie}", "arguments": {}})
        await settled(task_of(wary, "alice", str(created["taskId"])))
        done = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert done["status"] == "completed" and done["result"]["content"][0]["text"] == text


async def test_an_upstream_that_answers_directly_works_as_before(wary: LiveGateway, seen: Seen) -> None:
    async with caller(wary, "alice") as alice:
        created = await alice.result("tools/call", {"name": "liar__direct", "arguments": {}})
        await settled(task_of(wary, "alice", str(created["taskId"])))
        done = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert ("direct", True) in seen.calls
    assert done["status"] == "completed" and done["result"]["content"][0]["text"] == "answered directly"
