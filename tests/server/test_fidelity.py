"""Protocol fidelity through the gateway: resources, prompts, completions, input requests, progress,
list changes, resource updates, each compared with the upstream directly, and callers kept apart."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client.session import ClientRequestContext, IncomingMessage

from tests.conftest import http_upstream
from tests.harness import ERAS, Era, serve_conformance_upstream, serve_gateway, text_of
from tests.processes import RunningProcess

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def fixture_url() -> AsyncIterator[str]:
    async with serve_conformance_upstream() as url:
        yield url


@pytest.fixture(scope="module")
async def echo() -> AsyncIterator[tuple[str, RunningProcess]]:
    """The echo upstream runs as a process: what it prints on stderr shows a cancellation reached it."""
    async with http_upstream("echo") as started:
        yield started


@pytest.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, fixture_url: str, echo: tuple[str, RunningProcess]
) -> AsyncIterator[str]:
    servers = {
        "conf": {"transport": "streamable-http", "url": fixture_url, "prefix": "c"},
        "echo": {"transport": "streamable-http", "url": echo[0]},
    }
    async with serve_gateway(tmp_path_factory.mktemp("fidelity"), servers=servers, secured=False) as live:
        yield live.url


@pytest.mark.parametrize("mode", ERAS)
async def test_resources_are_namespaced_and_read_as_directly(gateway: str, fixture_url: str, mode: Era) -> None:
    async with Client(fixture_url, mode=mode) as direct:
        resources = (await direct.list_resources()).resources
        templates = (await direct.list_resource_templates()).resource_templates
        text = await direct.read_resource("test://static-text")
        templated = await direct.read_resource("test://template/42/data")
    async with Client(gateway, mode=mode) as client:
        through = (await client.list_resources()).resources
        through_templates = (await client.list_resource_templates()).resource_templates
        text_through = await client.read_resource("c+test://static-text")
        templated_through = await client.read_resource("c+test://template/42/data")
    # The gateway's own health resource comes first for callers allowed to see it (here: unrestricted).
    assert [r.uri for r in through] == ["gateway://health"] + ["c+" + r.uri for r in resources]
    assert [t.uri_template for t in through_templates] == ["c+" + t.uri_template for t in templates]
    assert [c.model_dump(exclude={"uri"}) for c in text_through.contents] == [
        c.model_dump(exclude={"uri"}) for c in text.contents
    ]
    assert text_through.contents[0].uri == "c+test://static-text"
    assert templated_through.contents[0].model_dump(exclude={"uri"}) == templated.contents[0].model_dump(
        exclude={"uri"}
    )


@pytest.mark.parametrize("mode", ERAS)
async def test_prompts_and_completions_answer_as_directly(gateway: str, fixture_url: str, mode: Era) -> None:
    arguments = {"arg1": "alpha", "arg2": "beta"}
    async with Client(fixture_url, mode=mode) as direct:
        prompts = (await direct.list_prompts()).prompts
        prompt = await direct.get_prompt("test_prompt_with_arguments", arguments)
        completion = await direct.complete(
            types.PromptReference(name="test_prompt_with_arguments"), {"name": "arg1", "value": "a"}
        )
    async with Client(gateway, mode=mode) as client:
        through = (await client.list_prompts()).prompts
        prompt_through = await client.get_prompt("c__test_prompt_with_arguments", arguments)
        completion_through = await client.complete(
            types.PromptReference(name="c__test_prompt_with_arguments"), {"name": "arg1", "value": "a"}
        )
    assert [p.name for p in through] == ["c__" + p.name for p in prompts]
    assert prompt_through.messages == prompt.messages
    assert completion_through.completion == completion.completion


def answering(answer: str) -> Any:
    async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": answer})

    return elicitation


@pytest.mark.parametrize("mode", ERAS)
async def test_two_callers_each_answer_their_own_elicitation(gateway: str, mode: Era) -> None:
    results: dict[str, str] = {}

    async def ask(name: str) -> None:
        async with Client(gateway, mode=mode, elicitation_callback=answering(name)) as client:
            result = await client.call_tool("c__test_input_required_result_elicitation", {})
            results[name] = text_of(result)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as callers:
            for name in ("Ada", "Grace", "Barbara"):
                callers.start_soon(ask, name)
    assert results == {name: f"Hello, {name}!" for name in ("Ada", "Grace", "Barbara")}


@pytest.mark.parametrize("mode", ERAS)
async def test_a_caller_without_the_capability_gets_a_clear_error_not_a_hang(gateway: str, mode: Era) -> None:
    async with Client(gateway, mode=mode) as client:
        with anyio.fail_after(15), pytest.raises(MCPError) as caught:
            await client.call_tool("c__test_missing_capability", {})
    assert caught.value.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
    assert "sampling" in str(caught.value.data or caught.value.message)


@pytest.mark.parametrize("mode", ERAS)
async def test_each_caller_receives_only_its_own_progress(gateway: str, mode: Era) -> None:
    seen: dict[float, list[float]] = {0.5: [], 0.2: []}

    async def call(seconds: float) -> None:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen[seconds].append(progress)

        async with Client(gateway, mode=mode) as client:
            await client.call_tool("echo__slow", {"seconds": seconds}, progress_callback=on_progress)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as callers:
            callers.start_soon(call, 0.5)
            callers.start_soon(call, 0.2)
    assert seen[0.5] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert seen[0.2] == pytest.approx([0.1, 0.2])


async def test_a_legacy_session_hears_that_the_tool_list_changed(gateway: str) -> None:
    changed = anyio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with Client(gateway, mode="legacy", message_handler=on_message) as client:
        before = {t.name for t in (await client.list_tools()).tools}
        await client.call_tool("c__test_trigger_tool_change", {})
        with anyio.fail_after(20):
            await changed.wait()
        after = {t.name for t in (await client.list_tools()).tools}
    assert before ^ after == {"c__test_added_tool"}


async def test_a_2026_listener_hears_that_the_tool_list_changed(gateway: str) -> None:
    async with Client(gateway, mode="auto") as client:
        before = {t.name for t in (await client.list_tools()).tools}
        async with client.listen(tools_list_changed=True) as subscription:
            await client.call_tool("c__test_trigger_tool_change", {})
            with anyio.fail_after(20):
                event = await subscription.__anext__()
        after = {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}
    assert type(event).__name__ == "ToolsListChanged"
    assert before ^ after == {"c__test_added_tool"}


@pytest.mark.parametrize("mode", ERAS)
async def test_a_cancelled_call_is_cancelled_upstream(
    gateway: str, echo: tuple[str, RunningProcess], mode: Era
) -> None:
    echo_process = echo[1]
    mark = echo_process.mark()
    async with Client(gateway, mode=mode) as client:
        with anyio.move_on_after(0.5):
            await client.call_tool("echo__slow", {"seconds": 30})
        await echo_process.wait_for(re.compile(r"^CANCELLED slow after 0\.\d s"), 10, mark)
        # The shared upstream session is still fine for the next call.
        assert text_of(await client.call_tool("echo__echo", {"text": "after"})) == "after"
