"""The agent loop in process, over an in-memory MCP session with a stand-in for the gateway.

The stand-in exports namespaced tools like the gateway and, when asked, the gateway's
`intelligent_tool_finder` with its documented answer (`{"mode", "note", "tools": [...]}`), which
is being built on the real gateway; the end-to-end tests in test_agent.py use the real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from examples.agent.conversation import Entry, ModelTurn, ToolCall, ToolResults, ToolSpec
from examples.agent.errors import AgentError, ScriptError
from examples.agent.gateway import FINDER, GatewayTools
from examples.agent.loop import run_agent
from examples.agent.scripted import DEFAULT_SCRIPT, AnswerStep, CallStep, Script, ScriptedModel, load_script

pytestmark = pytest.mark.anyio
TASK = "What's the weather in Lisbon?"
FORECAST_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


class StandIn:
    """A gateway stand-in: what it was asked, and the MCP server answering."""

    def __init__(self, *, finder: bool) -> None:
        self.calls: list[str] = []
        self.server = MCPServer("stand-in")

        @self.server.tool(name="weather__get_forecast", description="Get the daily weather forecast for a city.")
        def forecast(city: str, days: int = 1) -> dict[str, Any]:
            self.calls.append("weather__get_forecast")
            day = {"conditions": "sunny", "low_c": 10.0, "high_c": 20.0, "precipitation_chance": 0, "wind_kph": 5}
            return {"city": city, "days": [day] * days}

        @self.server.tool(name="notes__add_note", description="Add a note to the note store.")
        def add_note(title: str) -> str:
            self.calls.append("notes__add_note")
            return "added"

        if finder:

            @self.server.tool(name=FINDER, description="Find tools.")
            def find(query: str, top_k: int = 5) -> dict[str, Any]:
                self.calls.append(FINDER)
                found = [
                    {"name": "weather__get_forecast", "server": "weather", "description": "Daily forecast.",
                     "input_schema": FORECAST_SCHEMA, "score": 0.91, "callable": True},
                    {"name": "notes__add_note", "server": "notes", "description": "Add a note.",
                     "input_schema": {"type": "object"}, "score": 0.12, "callable": False},
                ]  # fmt: skip
                return {"mode": "hybrid", "note": None, "tools": found[:top_k]}


class Recorder:
    """Wraps a model and keeps the tool names it was offered on each turn."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.offered: list[set[str]] = []

    async def respond(self, system: str, conversation: Sequence[Entry], tools: Sequence[ToolSpec]) -> ModelTurn:
        self.offered.append({tool.name for tool in tools})
        turn: ModelTurn = await self.model.respond(system, conversation, tools)
        return turn


@asynccontextmanager
async def session(stand_in: StandIn, notices: list[str]) -> AsyncIterator[GatewayTools]:
    async with Client(stand_in.server) as client:
        yield GatewayTools(client, notices.append)


async def test_with_the_gateway_finder_the_agent_calls_only_the_callable_tools_it_found() -> None:
    stand_in, notices, steps = StandIn(finder=True), list[str](), list[str]()
    model = Recorder(ScriptedModel(load_script(DEFAULT_SCRIPT)))
    async with session(stand_in, notices) as gateway:
        answer = await run_agent(TASK, model, gateway, report=steps.append)

    assert answer == "Lisbon today: sunny, 10.0 to 20.0 °C, 0% chance of precipitation, wind 5 km/h."
    assert model.offered == [{FINDER}, {FINDER, "weather__get_forecast"}, {FINDER, "weather__get_forecast"}]
    assert stand_in.calls == [FINDER, "weather__get_forecast"]
    assert steps[0].endswith("-> 2 tools (hybrid): weather__get_forecast, notes__add_note")
    assert notices == []


async def test_without_the_finder_the_agent_says_so_once_and_ranks_tools_list() -> None:
    stand_in, notices, steps = StandIn(finder=False), list[str](), list[str]()
    script = Script(
        task_pattern=r"in (?P<city>\w+)",
        steps=[
            CallStep(call=FINDER, arguments={"query": "note store"}),
            CallStep(call=FINDER, arguments={"query": "weather forecast for a city"}),
            CallStep(call="weather__get_forecast", arguments={"city": "{city}"}),
            AnswerStep(answer="{result[days][0][conditions]} in {city}"),
        ],
    )
    async with session(stand_in, notices) as gateway:
        answer = await run_agent(TASK, ScriptedModel(script), gateway, report=steps.append)

    assert answer == "sunny in Lisbon"
    assert notices == [f"the gateway offers no {FINDER}; falling back to tools/list (ranked by the agent)"]
    assert steps[0].endswith("-> 1 tools (tools/list): notes__add_note")
    assert steps[1].endswith("-> 1 tools (tools/list): weather__get_forecast")
    assert stand_in.calls == ["weather__get_forecast"]


async def test_a_script_cannot_call_a_tool_the_agent_has_not_discovered() -> None:
    script = Script(steps=[CallStep(call="weather__get_forecast", arguments={"city": "Oslo"})])
    async with session(StandIn(finder=True), []) as gateway:
        with pytest.raises(ScriptError, match=r"calls 'weather__get_forecast', which the agent has not discovered"):
            await run_agent(TASK, ScriptedModel(script), gateway, report=lambda _: None)


class Reckless:
    """A model that calls a tool it was never offered, then answers with what it got back."""

    async def respond(self, system: str, conversation: Sequence[Entry], tools: Sequence[ToolSpec]) -> ModelTurn:
        results = [entry for entry in conversation if isinstance(entry, ToolResults)]
        if not results:
            return ModelTurn("", (ToolCall("c1", "notes__add_note", {"title": "sneaky"}),))
        return ModelTurn(results[-1].results[0].as_text())


async def test_a_model_calling_an_undiscovered_tool_gets_an_error_and_the_gateway_is_not_called() -> None:
    stand_in = StandIn(finder=True)
    async with session(stand_in, []) as gateway:
        answer = await run_agent(TASK, Reckless(), gateway, report=lambda _: None)
    assert f"Tool 'notes__add_note' has not been discovered; find it with {FINDER} first." in answer
    assert stand_in.calls == []


async def test_a_failed_call_reaches_the_model_and_stops_the_script() -> None:
    script = Script(
        steps=[
            CallStep(call=FINDER, arguments={"query": "forecast"}),
            CallStep(call="weather__get_forecast", arguments={"city": "Oslo", "days": "many"}),
            AnswerStep(answer="{result}"),
        ]
    )
    async with session(StandIn(finder=True), []) as gateway:
        with pytest.raises(ScriptError, match="answers, but weather__get_forecast failed"):
            await run_agent(TASK, ScriptedModel(script), gateway, report=lambda _: None)


async def test_the_agent_gives_up_after_its_step_budget() -> None:
    script = Script(steps=[CallStep(call=FINDER, arguments={"query": "forecast"})] * 3)
    async with session(StandIn(finder=True), []) as gateway:
        with pytest.raises(AgentError, match="no answer within 3 steps"):
            await run_agent(TASK, ScriptedModel(script), gateway, report=lambda _: None, max_steps=3)
