"""Hostile or mistaken input on the task methods gets a clear error naming what is wrong, and changes nothing."""

from __future__ import annotations

import pytest

from tests.harness import LiveGateway
from tests.tasks.upstream import Signals
from tests.tasks.wire import caller, settled, task_of

pytestmark = pytest.mark.anyio


async def test_an_unknown_task_id_is_invalid_params_naming_it(live: LiveGateway) -> None:
    async with caller(live, "alice") as alice:
        errors = [await alice.error(method, {"taskId": "made-up-id"}) for method in ("tasks/get", "tasks/cancel")]
        update = await alice.error("tasks/update", {"taskId": "made-up-id", "inputResponses": {}})
    for error in [*errors, update]:
        assert error["code"] == -32602
        assert "Unknown task 'made-up-id'" in error["message"]


@pytest.mark.parametrize(
    ("params", "culprit"),
    [
        ({}, "taskId"),
        ({"taskId": 42}, "taskId"),
        ({"taskId": ""}, "taskId"),
        ({"taskId": "x" * 10_000}, "taskId"),
        ({"taskId": ["a"]}, "taskId"),
    ],
)
async def test_malformed_task_params_are_refused_naming_the_field(
    live: LiveGateway, params: dict[str, object], culprit: str
) -> None:
    async with caller(live, "alice") as alice:
        error = await alice.error("tasks/get", params)
    assert error["code"] == -32602
    assert culprit in str(error), error
    assert len(str(error)) < 2000  # a huge id is not echoed back whole


async def test_malformed_input_responses_are_refused(live: LiveGateway) -> None:
    async with caller(live, "alice") as alice:
        error = await alice.error("tasks/update", {"taskId": "t", "inputResponses": "yes"})
    assert error["code"] == -32602 and "inputResponses" in str(error)


async def test_removed_v1_methods_are_unknown(live: LiveGateway) -> None:
    async with caller(live, "alice") as alice:
        errors = [await alice.error(method, {"taskId": "t"}) for method in ("tasks/result", "tasks/list")]
    assert [error["code"] for error in errors] == [-32601, -32601]


async def test_a_legacy_task_hint_with_a_huge_ttl_is_ignored(live: LiveGateway, signals: Signals) -> None:
    """SEP-2663: the server alone decides; a v1 `task: {ttl}` hint is tolerated and changes nothing."""
    async with caller(live, "alice") as alice:
        created = await alice.result(
            "tools/call", {"name": "gated__echo", "arguments": {"text": "hi"}, "task": {"ttl": 10**18}}
        )
        await settled(task_of(live, "alice", str(created["taskId"])))
        done = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert created["ttlMs"] == round(live.gateway.settings.tasks.ttl * 1000)
    assert done["result"]["content"][0]["text"] == "hi"


async def test_a_mismatched_routing_header_is_refused(live: LiveGateway) -> None:
    async with caller(live, "alice") as alice:
        answer = await alice.request("tasks/get", {"taskId": "t"}, headers={"mcp-name": "other"})
    assert answer["error"]["code"] == -32020
