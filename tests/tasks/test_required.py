"""Tools that run only as tasks (`tasks.required`, SEP-2663 taskSupport "required"), as each era sees them.

A 2026-07-28 caller that does not declare the extension is refused with -32021 naming it, on the lean path
and the SDK path alike, also through the finder's `call_tool`; a declaring caller gets a task; a 2025-11-25
session (served no tasks) is answered when the call ends. The upstream is never reached by a refused call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from aggregator.config.tasks import TasksSettings
from aggregator.tasks.task import EXTENSION
from tests.harness import LiveGateway, serve_upstreams
from tests.policies import ADMIN_SCOPES
from tests.tasks.upstream import Signals
from tests.tasks.wire import DEADLINE, caller, legacy_session, settled, task_of

pytestmark = pytest.mark.anyio

MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
REQUIRED = {"gated": ["sl*", "confirm"]}


@pytest.fixture(scope="module")
async def strict(tmp_path_factory: pytest.TempPathFactory, gated: tuple[str, Signals]) -> AsyncIterator[LiveGateway]:
    """A gateway on which the gated upstream's `slow` and `confirm` run only as tasks."""
    directory = tmp_path_factory.mktemp("required")
    async with serve_upstreams(
        directory, {"gated": gated[0]}, scopes=ADMIN_SCOPES, tasks={"answer_within": 0, "required": REQUIRED}
    ) as live:
        yield live


def assert_refused_for_the_extension(error: dict[str, Any]) -> None:
    assert error["code"] == MISSING_REQUIRED_CLIENT_CAPABILITY, error
    assert error["data"] == {"requiredCapabilities": {"extensions": {EXTENSION: {}}}}
    assert EXTENSION in error["message"]


async def test_a_caller_without_the_extension_is_refused_and_the_upstream_never_called(
    strict: LiveGateway, signals: Signals
) -> None:
    async with caller(strict, "alice", declare=False) as alice:
        error = await alice.error("tools/call", {"name": "gated__slow", "arguments": {"label": "refused"}})
        assert_refused_for_the_extension(error)
        plain = await alice.result("tools/call", {"name": "gated__echo", "arguments": {"text": "still served"}})
    assert plain["content"][0]["text"] == "still served"  # a tool not in tasks.required
    assert not signals.started["refused"].is_set()
    assert strict.gateway.tasks is not None and len(strict.gateway.tasks.store) == 0


async def test_a_declaring_caller_gets_the_required_tool_as_a_task(strict: LiveGateway, signals: Signals) -> None:
    async with caller(strict, "alice") as alice:
        created = await alice.result("tools/call", {"name": "gated__slow", "arguments": {"label": "as-task"}})
        assert created["resultType"] == "task"
        signals.release["as-task"].set()
        await settled(task_of(strict, "alice", created["taskId"]))
        done = await alice.result("tasks/get", {"taskId": created["taskId"]})
    assert done["status"] == "completed" and done["result"]["content"][0]["text"] == "done as-task"


async def test_a_real_2026_client_is_refused_and_a_2025_session_is_answered(
    strict: LiveGateway, signals: Signals
) -> None:
    signals.release["legacy"].set()
    async with strict.client("alice", groups=["operators"], era="legacy") as legacy:
        listed = {tool.name: tool for tool in (await legacy.list_tools()).tools}
        answered = await legacy.call_tool("gated__slow", {"label": "legacy"})
    # The gateway serves 2025-11-25 sessions no tasks, so it does not tell them the tool needs one.
    assert listed["gated__slow"].execution is None
    assert isinstance(answered.content[0], types.TextContent) and answered.content[0].text == "done legacy"

    async with strict.client("alice", groups=["operators"], era="auto") as modern:
        assert "gated__slow" in {tool.name for tool in (await modern.list_tools()).tools}
        with pytest.raises(MCPError) as refused:
            await modern.call_tool("gated__slow", {"label": "modern"})
    assert refused.value.error.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    assert refused.value.error.data == {"requiredCapabilities": {"extensions": {EXTENSION: {}}}}
    assert not signals.started["modern"].is_set()


async def test_the_finder_call_tool_does_not_bypass_the_requirement(strict: LiveGateway, signals: Signals) -> None:
    async with caller(strict, "alice", declare=False) as alice:
        arguments = {"name": "gated__slow", "arguments": {"label": "via-finder"}}
        answer = await alice.request("tools/call", {"name": "call_tool", "arguments": arguments})
    refused = answer.get("error") or answer["result"]
    assert "error" in answer or refused["isError"] is True, answer
    assert EXTENSION in str(refused)
    assert not signals.started["via-finder"].is_set()


async def test_a_malformed_declaration_is_no_declaration(strict: LiveGateway, signals: Signals) -> None:
    """Capabilities of the wrong shape neither crash the gateway nor count as declaring the extension."""
    malformed: list[tuple[str, dict[str, Any]]] = [
        ("list", {"extensions": [EXTENSION]}),
        ("text", {"extensions": EXTENSION}),
    ]
    for label, capabilities in malformed:
        async with caller(strict, "alice", declare=False, **capabilities) as alice:
            answer = await alice.request("tools/call", {"name": "gated__slow", "arguments": {"label": label}})
        assert "error" in answer, answer
        assert answer["error"]["code"] in (MISSING_REQUIRED_CLIENT_CAPABILITY, types.INVALID_PARAMS), answer
        assert not signals.started[label].is_set()


async def test_a_legacy_session_declaring_the_extension_is_still_answered_plainly(
    strict: LiveGateway, signals: Signals
) -> None:
    signals.release["legacy-declared"].set()
    async with legacy_session(strict, "alice", {"extensions": {EXTENSION: {}}}) as session:
        with anyio.fail_after(DEADLINE):
            call = {"name": "gated__slow", "arguments": {"label": "legacy-declared"}}
            answered = await session.result("tools/call", call)
    assert answered["content"][0]["text"] == "done legacy-declared"


def test_required_patterns_match_a_servers_own_tool_names() -> None:
    settings = TasksSettings(required={"gated": ("sl*", "confirm")})
    assert settings.requires_task("gated", "slow") and settings.requires_task("gated", "confirm")
    assert not settings.requires_task("gated", "SLOW")  # case-sensitive, as tool names are
    assert not settings.requires_task("other", "slow")
    assert not TasksSettings(enabled=False, required={"gated": ("*",)}).requires_task("gated", "slow")


@pytest.mark.parametrize("required", [{"Bad Name": ("x",)}, {"gated": ("",)}, {"gated": "slow"}])
def test_a_bad_required_section_is_refused_at_load(required: Any) -> None:
    with pytest.raises(ValidationError):
        TasksSettings(required=required)
