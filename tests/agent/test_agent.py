"""The example agent, end to end: real OIDC tokens, a real gateway, the demo weather upstream, the
scripted model. It starts with only `intelligent_tool_finder`, discovers `weather__get_forecast`,
calls it as the agent itself or as a signed-in user, and prints the answer."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest
from mcp import Client

from aggregator.cli.login import load_tokens, save_tokens
from examples.agent.scripted import DEFAULT_SCRIPT, AnswerStep, load_script
from tests.agent.conftest import (
    AGENT,
    AUDIENCE,
    CLI_CLIENT,
    USER,
    Finished,
    Stack,
    agent_argv,
    audit_entries,
    login_through_the_browser,
    run_command,
)
from tests.policy.oidc import requires_oidc_provider

pytestmark = [pytest.mark.anyio, requires_oidc_provider]
FALLBACK_NOTICE = "note: the gateway offers no intelligent_tool_finder; falling back to tools/list"


async def expected_answer(stack: Stack, city: str) -> str:
    """What the demo script answers, computed from the weather upstream itself."""
    async with Client(stack.weather_url) as direct:
        forecast = await direct.call_tool("get_forecast", {"city": city, "days": 1})
    answer = load_script(DEFAULT_SCRIPT).steps[-1]
    assert isinstance(answer, AnswerStep)
    return answer.answer.format(result=forecast.structured_content, city=city)


def assert_discovered_then_called(run: Finished) -> None:
    """The agent found the forecast tool with the finder (or its tools/list stand-in), then called it."""
    assert run.status == 0, run.stderr
    finder = re.search(r"step 1: intelligent_tool_finder\(.*\) -> \d+ tools \(([\w/-]+)\): (.*)", run.stderr)
    assert finder is not None, run.stderr
    assert "weather__get_forecast" in finder.group(2).split(", ")
    assert (finder.group(1) == "tools/list") == (FALLBACK_NOTICE in run.stderr), run.stderr
    assert 'step 2: weather__get_forecast(city="Lisbon", days=1) -> ok' in run.stderr
    assert "Bearer" not in run.stderr + run.stdout


async def test_the_agent_as_itself_discovers_and_calls_the_forecast_tool(stack: Stack) -> None:
    mark = stack.gateway.log.mark()
    identity = ["--issuer", stack.provider.issuer, "--client-id", AGENT.client_id, "--scope", "mcp"]
    identity += ["--resource", AUDIENCE, "--client-secret-env", "TEST_AGENT_SECRET"]
    run = await run_command(agent_argv(stack, *identity), env={"TEST_AGENT_SECRET": AGENT.client_secret})

    assert_discovered_then_called(run)
    assert f"identity: agent client '{AGENT.client_id}'" in run.stderr
    assert run.stdout.strip() == await expected_answer(stack, "Lisbon")
    call = rf"request principal={AGENT.client_id} method=tools/call target=weather__get_forecast outcome=ok "
    await stack.gateway.log.wait_for(call, after=mark)


async def test_the_agent_as_the_signed_in_user_calls_tools_as_that_user(stack: Stack, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.json"
    assert (await login_through_the_browser(stack, token_file)).status == 0
    signed_in = load_tokens(token_file)
    save_tokens(token_file, dataclasses.replace(signed_in, expires_at=time.time() - 1))  # the agent must refresh
    mark = stack.gateway.log.mark()

    run = await run_command(agent_argv(stack, "--use-user-token", "--token-file", str(token_file)))

    assert_discovered_then_called(run)
    assert run.stdout.strip() == await expected_answer(stack, "Lisbon")
    assert load_tokens(token_file).access_token != signed_in.access_token  # refreshed by get_token()
    call = rf"request principal={USER} method=tools/call target=weather__get_forecast outcome=ok "
    await stack.gateway.log.wait_for(call, after=mark)
    calls = [(e["client_id"], e["auth"], e["decision"]) for e in audit_entries(stack) if e["principal"] == USER]
    assert (CLI_CLIENT, "oidc", "allow") in calls
    for secret in (signed_in.access_token, load_tokens(token_file).access_token, signed_in.refresh_token or "?"):
        assert secret not in stack.gateway.log.output + run.stdout + run.stderr


async def test_the_agent_without_a_token_is_refused_by_a_secured_gateway(stack: Stack) -> None:
    run = await run_command(agent_argv(stack))
    assert run.status == 1
    assert "identity: none" in run.stderr
    assert (
        "agent: error: the gateway refused the agent's credentials (HTTP 401: A bearer token is required.)"
        in run.stderr
    )
    assert run.stdout == ""
