"""The tasks extension through the gateway, with a real upstream: a call outlives its caller, stays its
caller's own, and stops upstream when cancelled."""

from __future__ import annotations

import anyio
import pytest

from aggregator.tasks.task import EXTENSION
from tests.harness import LiveGateway
from tests.tasks.upstream import Signals
from tests.tasks.wire import DEADLINE, caller, settled, started_call, task_of

pytestmark = pytest.mark.anyio


async def test_a_slow_call_becomes_a_task_that_outlives_its_caller(live: LiveGateway, signals: Signals) -> None:
    async with caller(live, "alice") as first:
        created = await started_call(first, "gated__slow", signals.started, "outlives")
        working = await first.result("tasks/get", {"taskId": created["taskId"]})
    # The caller has disconnected; the call goes on upstream.
    assert created["resultType"] == "task" and created["status"] == "working"
    assert {"createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"} <= created.keys()
    assert "result" not in created and "task" not in created
    assert working["status"] == "working" and working["resultType"] == "complete"
    signals.release["outlives"].set()
    await settled(task_of(live, "alice", str(created["taskId"])))
    async with caller(live, "alice") as back:
        done = await back.result("tasks/get", {"taskId": created["taskId"]})
    assert done["status"] == "completed"
    assert done["result"]["content"] == [{"type": "text", "text": "done outlives"}]
    assert not signals.cancelled["outlives"].is_set()


async def test_another_principal_cannot_see_get_answer_or_cancel_a_task(live: LiveGateway, signals: Signals) -> None:
    async with caller(live, "alice") as alice, caller(live, "bob") as bob:
        created = await started_call(alice, "gated__slow", signals.started, "private")
        task_id = created["taskId"]
        unknown = await bob.error("tasks/get", {"taskId": "no-such-task"})
        refused = {
            method: await bob.error(method, params)
            for method, params in {
                "tasks/get": {"taskId": task_id},
                "tasks/cancel": {"taskId": task_id},
                "tasks/update": {"taskId": task_id, "inputResponses": {}},
            }.items()
        }
        still = await alice.result("tasks/get", {"taskId": task_id})
        signals.release["private"].set()
    for error in refused.values():
        assert error["code"] == unknown["code"] == -32602
        assert error["message"] == unknown["message"].replace("no-such-task", str(task_id))
    assert still["status"] == "working"
    assert not signals.cancelled["private"].is_set()


async def test_a_cancelled_task_stops_the_upstream_call(live: LiveGateway, signals: Signals) -> None:
    async with caller(live, "alice") as alice:
        created = await started_call(alice, "gated__slow", signals.started, "cancel")
        ack = await alice.result("tasks/cancel", {"taskId": created["taskId"]})
        with anyio.fail_after(DEADLINE):
            await signals.cancelled["cancel"].wait()
        after = await alice.result("tasks/get", {"taskId": created["taskId"]})
        again = await alice.result("tasks/cancel", {"taskId": created["taskId"]})
    assert ack == {"resultType": "complete", "_meta": ack["_meta"]}
    assert after["status"] == "cancelled" and "result" not in after
    assert again["resultType"] == "complete" and "status" not in again


async def test_tool_errors_complete_and_protocol_errors_fail(live: LiveGateway) -> None:
    async with caller(live, "alice") as alice:
        tool_error = await alice.result("tools/call", {"name": "gated__fail", "arguments": {"message": "nope"}})
        too_big = await alice.result("tools/call", {"name": "gated__big", "arguments": {"size": 5000}})
        for created in (tool_error, too_big):
            await settled(task_of(live, "alice", str(created["taskId"])))
        completed = await alice.result("tasks/get", {"taskId": tool_error["taskId"]})
        failed = await alice.result("tasks/get", {"taskId": too_big["taskId"]})
        unknown_tool = await alice.error("tools/call", {"name": "gated__missing", "arguments": {}})
    assert completed["status"] == "completed" and completed["result"]["isError"] is True
    assert failed["status"] == "failed" and "result" not in failed
    assert failed["error"]["code"] == -32603 and "tasks.max_result_bytes" in failed["error"]["message"]
    assert unknown_tool["code"] == -32602  # refused at once: no task is made for a call that cannot start


async def test_without_the_extension_calls_are_plain_and_task_methods_are_refused(live: LiveGateway) -> None:
    async with caller(live, "alice", declare=False) as plain:
        answered = await plain.result("tools/call", {"name": "gated__echo", "arguments": {"text": "hi"}})
        refused = await plain.error("tasks/get", {"taskId": "anything"})
    assert answered["resultType"] == "complete" and answered["content"][0]["text"] == "hi"
    assert refused["code"] == -32021
    assert refused["data"] == {"requiredCapabilities": {"extensions": {EXTENSION: {}}}}


async def test_a_question_during_a_task_is_answered_with_tasks_update(live: LiveGateway) -> None:
    async with caller(live, "alice", elicitation={}) as alice:
        created = await alice.result("tools/call", {"name": "gated__confirm", "arguments": {"label": "deploy"}})
        task = task_of(live, "alice", str(created["taskId"]))
        with anyio.fail_after(DEADLINE):
            while task.status != "input_required":
                await task.settled.wait()
        asked = await alice.result("tasks/get", {"taskId": created["taskId"]})
        (key,) = asked["inputRequests"]
        ignored = {"not-asked": {"nonsense": True}}
        ack = await alice.result("tasks/update", {"taskId": created["taskId"], "inputResponses": ignored})
        malformed = await alice.error("tasks/update", {"taskId": created["taskId"], "inputResponses": {key: "yes"}})
        still = await alice.result("tasks/get", {"taskId": created["taskId"]})
        answer = {key: {"action": "accept", "content": {"ok": True}}}
        await alice.result("tasks/update", {"taskId": created["taskId"], "inputResponses": answer})
        await settled(task)
        done = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert asked["status"] == "input_required"
    assert asked["inputRequests"][key]["method"] == "elicitation/create"
    assert ack["resultType"] == "complete" and "status" not in ack
    assert malformed["code"] == -32602 and key in malformed["message"]
    assert still["status"] == "input_required" and list(still["inputRequests"]) == [key]
    assert done["status"] == "completed"
    assert done["result"]["content"][0]["text"] == "deploy: accept True"
