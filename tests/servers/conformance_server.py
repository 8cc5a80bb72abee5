"""The upstream the MCP conformance suite's server scenarios expect, served over streamable HTTP.

`@modelcontextprotocol/conformance` (tools/package.json) calls fixtures by exact name: tools
such as `test_simple_text` or `test_input_required_result_multi_round`, the resources
`test://static-text`, `test://static-binary`, `test://watched-resource` and the template
`test://template/{id}/data`, and prompts such as `test_prompt_with_arguments`. Each scenario's
description in the suite states what its fixture must return; this server implements all of
them for both protocol eras at one URL:

- 2025-11-25 (handshake, sessions): elicitation, sampling and roots are real server-to-client
  requests sent mid-call; logging follows `logging/setLevel`.
- 2026-07-28 (stateless): the same questions come back as an `InputRequiredResult` and the
  client retries with `inputResponses` and the sealed `requestState`; list changes reach
  `subscriptions/listen` streams; results carry caching hints. The tasks extension (SEP-2663)
  is this project's own `TasksExtension` (tests/tasks/fixtures.py), run by the app's lifespan.

Tests run the suite against it directly, or against the gateway fronting it. Run as

    python -m tests.servers.conformance_server --host 127.0.0.1 --port 0   # from the repository root

It prints `READY http://HOST:PORT/mcp` on stdout once it serves requests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import secrets
import socket
import struct
import warnings
import wave
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, get_args

import anyio
import mcp_types as types
import uvicorn
from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ServerEvent,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from starlette.applications import Starlette

from aggregator.tasks.extension import TasksExtension
from tests.servers.exchange import (
    Exchange,
    InputRequired,
    RequestStateSeal,
    answered,
    elicit,
    missing_capability,
    sample,
    sampled_text,
    text,
)
from tests.tasks.fixtures import TASK_SCHEMAS, install_tasks, task_fixtures

# The suite exercises logging, sampling and roots on purpose, all deprecated in 2026-07-28.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

Context = ServerRequestContext[Any, Any]
Result = types.CallToolResult | types.InputRequiredResult


def _png_pixel() -> bytes:
    """A valid 1x1 red PNG, built rather than pasted."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    """A valid, one-sample mono WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x00")
    return buffer.getvalue()


PNG = _png_pixel()
PNG_BASE64 = base64.b64encode(PNG).decode()
WAV_BASE64 = base64.b64encode(_wav_silence()).decode()

NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}

# SEP-1613 / SEP-2106: a schema using 2020-12 keywords that a proxy must pass through untouched.
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

# SEP-2243: a parameter the client must mirror in an `Mcp-Param-Region` header.
MIRRORED_HEADER: dict[str, Any] = {
    "type": "object",
    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
    "required": ["region"],
}

LOG_LEVELS: tuple[types.LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)


class MemoryEventStore(EventStore):
    """Keeps every SSE event so a client can resume a dropped stream with Last-Event-ID (SEP-1699)."""

    def __init__(self) -> None:
        self._events: list[tuple[str, types.JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: str, message: types.JSONRPCMessage | None) -> str:
        self._events.append((stream_id, message))
        return str(len(self._events))

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        if not last_event_id.isdigit() or not 0 < int(last_event_id) <= len(self._events):
            return None
        seen = int(last_event_id)
        stream_id = self._events[seen - 1][0]
        for event_id, (stream, message) in enumerate(self._events[seen:], start=seen + 1):
            if stream == stream_id and message is not None:  # None marks a priming event
                await send_callback(EventMessage(message, str(event_id)))
        return stream_id


Handler = Callable[[Exchange], Awaitable[types.CallToolResult]]


class ConformanceFixtures:
    """The tools, resources and prompts the conformance scenarios call, and their mutable state."""

    def __init__(self, seal: RequestStateSeal, bus: InMemorySubscriptionBus) -> None:
        self.seal = seal
        self.bus = bus
        self.subscriptions: set[str] = set()
        self.log_levels: dict[str, types.LoggingLevel] = {}
        self.extra_tool = False
        self.extra_prompt = False
        served: dict[str, tuple[Handler, str]] = {
            "test_simple_text": (self.simple_text, "Returns one text block."),
            "test_image_content": (self.image_content, "Returns a 1x1 PNG image."),
            "test_audio_content": (self.audio_content, "Returns a short WAV clip."),
            "test_embedded_resource": (self.embedded_resource, "Returns an embedded text resource."),
            "test_multiple_content_types": (self.mixed_content, "Returns text, image and resource."),
            "test_tool_with_logging": (self.logging, "Logs three info messages while running."),
            "test_logging_tool": (self.logging, "Logs three info messages while running."),
            "test_tool_with_progress": (self.progress, "Reports progress 0, 50 and 100 of 100."),
            "test_error_handling": (self.error, "Always fails with isError: true."),
            "test_sampling": (self.sampling, "Asks the client's LLM to answer a prompt."),
            "test_elicitation": (self.elicitation, "Asks the user for input."),
            "test_elicitation_sep1034_defaults": (self.defaults, "Elicits fields with defaults."),
            "test_elicitation_sep1330_enums": (self.enums, "Elicits every enum variant."),
            "test_streaming_elicitation": (self.streaming, "Asks the user while the call is open."),
            "test_missing_capability": (self.needs_sampling, "Needs the sampling capability."),
            "test_trigger_tool_change": (self.toggle_tool, "Toggles test_added_tool in tools/list."),
            "test_trigger_prompt_change": (self.toggle_prompt, "Toggles test_added_prompt."),
            "json_schema_2020_12_tool": (self.echo, "Echoes its arguments."),
            "test_custom_headers": (self.echo, "Echoes a parameter mirrored in a header."),
            "test_reconnection": (self.reconnection, "Drops its SSE stream before answering."),
            "test_input_required_result_elicitation": (self.ask_name, "Asks the user's name."),
            "test_input_required_result_sampling": (self.ask_llm, "Asks the LLM a question."),
            "test_input_required_result_list_roots": (self.ask_roots, "Asks for the client's roots."),
            "test_input_required_result_request_state": (self.confirm, "Confirms via requestState."),
            "test_input_required_result_tampered_state": (self.confirm, "Rejects altered state."),
            "test_input_required_result_multiple_inputs": (self.ask_all, "Asks three questions at once."),
            "test_input_required_result_multi_round": (self.two_rounds, "Asks two questions in turn."),
            "test_input_required_result_capabilities": (
                self.ask_within_capabilities,
                "Asks only what the client can answer.",
            ),
        }
        served |= task_fixtures()
        self.tools: dict[str, tuple[types.Tool, Handler]] = {
            name: (_tool(name, description, INPUT_SCHEMAS.get(name, NO_ARGUMENTS)), handler)
            for name, (handler, description) in served.items()
        }
        self.added_tool = _tool("test_added_tool", "Present after test_trigger_tool_change.")

    # --- tools/list, tools/call ---------------------------------------------------------------

    async def list_tools(self, ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        tools = [tool for tool, _ in self.tools.values()]
        return types.ListToolsResult(tools=[*tools, self.added_tool] if self.extra_tool else tools)

    async def call_tool(self, ctx: Context, params: types.CallToolRequestParams) -> Result:
        if params.name == self.added_tool.name and self.extra_tool:
            return text("The added tool ran.")
        if params.name not in self.tools:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool {params.name!r}.")
        _, handler = self.tools[params.name]
        try:
            return await handler(self._exchange(ctx, params.name, params.arguments or {}, params))
        except InputRequired as pending:
            return pending.result

    def _exchange(
        self, ctx: Context, name: str, arguments: dict[str, Any], params: types.InputResponseRequestParams
    ) -> Exchange:
        responses = params.input_responses or {}
        return Exchange(ctx, name, arguments, responses, params.request_state, self.seal)

    async def simple_text(self, call: Exchange) -> types.CallToolResult:
        return text("This is a simple text response for testing.")

    async def image_content(self, call: Exchange) -> types.CallToolResult:
        return types.CallToolResult(content=[types.ImageContent(data=PNG_BASE64, mime_type="image/png")])

    async def audio_content(self, call: Exchange) -> types.CallToolResult:
        return types.CallToolResult(content=[types.AudioContent(data=WAV_BASE64, mime_type="audio/wav")])

    async def embedded_resource(self, call: Exchange) -> types.CallToolResult:
        resource = types.TextResourceContents(
            uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
        )
        return types.CallToolResult(content=[types.EmbeddedResource(resource=resource)])

    async def mixed_content(self, call: Exchange) -> types.CallToolResult:
        resource = types.TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text=json.dumps({"test": "data", "value": 123}),
        )
        return types.CallToolResult(
            content=[
                types.TextContent(text="Multiple content types test:"),
                types.ImageContent(data=PNG_BASE64, mime_type="image/png"),
                types.EmbeddedResource(resource=resource),
            ]
        )

    async def logging(self, call: Exchange) -> types.CallToolResult:
        for step, message in enumerate(["Tool execution started", "Tool processing data", "Tool execution completed"]):
            if step:
                await anyio.sleep(0.05)  # the scenario checks the logs arrive spread over the call
            await self._log(call.ctx, "info", message)
        return text("Tool with logging executed successfully")

    async def _log(self, ctx: Context, level: types.LoggingLevel, message: str) -> None:
        threshold = self.log_levels.get(_session_id(ctx) or "", "debug")
        if LOG_LEVELS.index(level) >= LOG_LEVELS.index(threshold):
            # On 2026-07-28 the SDK delivers this only if the request's _meta opted in to logs.
            await ctx.session.send_log_message(level, message, "conformance-server", related_request_id=ctx.request_id)

    async def progress(self, call: Exchange) -> types.CallToolResult:
        for step in (0, 50, 100):
            if step:
                await anyio.sleep(0.05)
            await call.ctx.session.report_progress(step, 100, f"Completed step {step} of 100")
        token = (call.ctx.meta or {}).get("progress_token")
        return text(f"Progress reported for token {token!r}.")

    async def error(self, call: Exchange) -> types.CallToolResult:
        message = types.TextContent(text="This tool intentionally returns an error for testing")
        return types.CallToolResult(content=[message], is_error=True)

    async def sampling(self, call: Exchange) -> types.CallToolResult:
        answers = await call.ask({"completion": sample(str(call.arguments.get("prompt", "")), 100)})
        return text(f"LLM response: {sampled_text(answers['completion'])}")

    async def elicitation(self, call: Exchange) -> types.CallToolResult:
        request = elicit(
            str(call.arguments.get("message", "")),
            {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
        )
        answer = (await call.ask({"user_input": request}))["user_input"]
        return text(f"User response: {_describe(answer)}")

    async def defaults(self, call: Exchange) -> types.CallToolResult:
        request = elicit(
            "Please review and update the form fields with defaults",
            {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": {"type": "boolean", "description": "Verification status", "default": True},
            },
            required=[],
        )
        answer = (await call.ask({"defaults": request}))["defaults"]
        return text(f"Elicitation completed: {_describe(answer)}")

    async def enums(self, call: Exchange) -> types.CallToolResult:
        titled = [{"const": f"value{n}", "title": title} for n, title in enumerate(["First", "Second", "Third"], 1)]
        request = elicit(
            "Please select options from the enum fields",
            {
                "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                "titledSingle": {"type": "string", "oneOf": [{**o, "title": f"{o['title']} Option"} for o in titled]},
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 3,
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                },
                "titledMulti": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 3,
                    "items": {"anyOf": [{**o, "title": f"{o['title']} Choice"} for o in titled]},
                },
            },
            required=[],
        )
        answer = (await call.ask({"enums": request}))["enums"]
        return text(f"Elicitation completed: {_describe(answer)}")

    async def streaming(self, call: Exchange) -> types.CallToolResult:
        answer = (await call.ask({"answer": elicit("Anything to add?", {"answer": {"type": "string"}})}))["answer"]
        return text(f"Streaming elicitation finished: {_describe(answer)}")

    async def needs_sampling(self, call: Exchange) -> types.CallToolResult:
        sampling = types.ClientCapabilities(sampling=types.SamplingCapability())
        if not call.declares(sampling):
            missing_capability(sampling)
        return text("The client declared sampling.")

    async def toggle_tool(self, call: Exchange) -> types.CallToolResult:
        self.extra_tool = not self.extra_tool
        await self._announce(call.ctx, ToolsListChanged())
        return text(f"test_added_tool is now {'listed' if self.extra_tool else 'gone'}.")

    async def toggle_prompt(self, call: Exchange) -> types.CallToolResult:
        self.extra_prompt = not self.extra_prompt
        await self._announce(call.ctx, PromptsListChanged())
        return text(f"test_added_prompt is now {'listed' if self.extra_prompt else 'gone'}.")

    async def _announce(self, ctx: Context, event: ServerEvent) -> None:
        await self.bus.publish(event)  # 2026-07-28: subscriptions/listen streams
        if isinstance(event, ToolsListChanged):
            await ctx.session.send_tool_list_changed()  # 2025-11-25: the session's GET stream
        else:
            await ctx.session.send_prompt_list_changed()

    async def echo(self, call: Exchange) -> types.CallToolResult:
        return text(json.dumps(call.arguments, sort_keys=True))

    async def reconnection(self, call: Exchange) -> types.CallToolResult:
        if call.ctx.close_sse_stream is not None:  # 2025-11-25 with an event store: the client resumes
            await call.ctx.close_sse_stream()
        return text("Reconnection test completed.")

    async def ask_name(self, call: Exchange) -> types.CallToolResult:
        answer = (await call.ask({"user_name": elicit("What is your name?", {"name": {"type": "string"}})}))[
            "user_name"
        ]
        return text(f"Hello, {answered(answer, 'name')}!")

    async def ask_llm(self, call: Exchange) -> types.CallToolResult:
        answers = await call.ask({"capital_question": sample("What is the capital of France?", 100)})
        return text(f"Sampling result: {sampled_text(answers['capital_question'])}")

    async def ask_roots(self, call: Exchange) -> types.CallToolResult:
        answer = (await call.ask({"client_roots": types.ListRootsRequest()}))["client_roots"]
        roots = [str(root.uri) for root in answer.roots] if isinstance(answer, types.ListRootsResult) else []
        return text(f"Found {len(roots)} root(s): {', '.join(roots)}")

    async def confirm(self, call: Exchange) -> types.CallToolResult:
        state = call.verified_state()
        answer = await call.ask({"confirm": elicit("Please confirm", {"ok": {"type": "boolean"}})}, state={})
        if call.modern and state is None:
            raise MCPError(types.INVALID_PARAMS, "The retry must echo the requestState it was given.")
        return text(f"state-ok: confirmed={answered(answer['confirm'], 'ok')}")

    async def ask_all(self, call: Exchange) -> types.CallToolResult:
        answers = await call.ask(
            {
                "user_name": elicit("What is your name?", {"name": {"type": "string"}}),
                "greeting": sample("Generate a greeting", 50),
                "client_roots": types.ListRootsRequest(),
            },
            state={},
        )
        roots = answers.get("client_roots")
        count = len(roots.roots) if isinstance(roots, types.ListRootsResult) else 0
        name = answered(answers.get("user_name"), "name")
        return text(f"{sampled_text(answers.get('greeting'))}, {name}! You have {count} root(s).")

    async def two_rounds(self, call: Exchange) -> types.CallToolResult:
        state = call.verified_state() or {}
        if "name" not in state:
            first = await call.ask({"step1": elicit("Step 1: What is your name?", {"name": {"type": "string"}})}, {})
            state = {"name": answered(first["step1"], "name")}
        second = await call.ask(
            {"step2": elicit("Step 2: What is your favorite color?", {"color": {"type": "string"}})}, state
        )
        return text(f"{state['name']}'s favorite color is {answered(second['step2'], 'color')}.")

    async def ask_within_capabilities(self, call: Exchange) -> types.CallToolResult:
        answers = await call.ask(
            {
                "user_name": elicit("What is your name?", {"name": {"type": "string"}}),
                "capital_question": sample("What is the capital of France?", 100),
            }
        )
        return text(f"Answered: {', '.join(sorted(answers))}")

    # --- resources ------------------------------------------------------------------------------

    async def list_resources(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri="test://static-text",
                    name="static-text",
                    description="A static text resource.",
                    mime_type="text/plain",
                ),
                types.Resource(
                    uri="test://static-binary",
                    name="static-binary",
                    description="A static binary resource (a PNG image).",
                    mime_type="image/png",
                ),
                types.Resource(
                    uri="test://watched-resource",
                    name="watched-resource",
                    description="A resource clients may subscribe to.",
                    mime_type="text/plain",
                ),
            ]
        )

    async def list_resource_templates(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        template = types.ResourceTemplate(
            uri_template="test://template/{id}/data",
            name="template-data",
            description="JSON data for the id in the URI.",
            mime_type="application/json",
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    async def read_resource(self, ctx: Context, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = params.uri
        contents: types.TextResourceContents | types.BlobResourceContents
        if uri == "test://static-text":
            contents = types.TextResourceContents(
                uri=uri, mime_type="text/plain", text="This is the content of the static text resource."
            )
        elif uri == "test://static-binary":
            contents = types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG_BASE64)
        elif uri == "test://watched-resource":
            contents = types.TextResourceContents(uri=uri, mime_type="text/plain", text="Watched resource content")
        elif uri.startswith("test://template/") and uri.endswith("/data"):
            item = uri.removeprefix("test://template/").removesuffix("/data")
            body = json.dumps({"id": item, "templateTest": True, "data": f"Data for ID: {item}"})
            contents = types.TextResourceContents(uri=uri, mime_type="application/json", text=body)
        else:
            raise MCPError(types.INVALID_PARAMS, f"Resource {uri!r} not found.", data={"uri": uri})
        return types.ReadResourceResult(contents=[contents])

    async def subscribe(self, ctx: Context, params: types.SubscribeRequestParams) -> types.EmptyResult:
        self.subscriptions.add(params.uri)
        return types.EmptyResult()

    async def unsubscribe(self, ctx: Context, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        self.subscriptions.discard(params.uri)
        return types.EmptyResult()

    # --- prompts --------------------------------------------------------------------------------

    async def list_prompts(self, ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        def argument(name: str, description: str) -> types.PromptArgument:
            return types.PromptArgument(name=name, description=description, required=True)

        prompts = [
            types.Prompt(name="test_simple_prompt", description="A prompt without arguments."),
            types.Prompt(
                name="test_prompt_with_arguments",
                description="A prompt with two required arguments.",
                arguments=[argument("arg1", "First test argument"), argument("arg2", "Second test argument")],
            ),
            types.Prompt(
                name="test_prompt_with_embedded_resource",
                description="A prompt embedding the resource it is given.",
                arguments=[argument("resourceUri", "URI of the resource to embed")],
            ),
            types.Prompt(name="test_prompt_with_image", description="A prompt with an image."),
            types.Prompt(name="test_input_required_result_prompt", description="A prompt that asks the user first."),
        ]
        if self.extra_prompt:
            prompts.append(
                types.Prompt(name="test_added_prompt", description="Present after test_trigger_prompt_change.")
            )
        return types.ListPromptsResult(prompts=prompts)

    async def get_prompt(
        self, ctx: Context, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult | types.InputRequiredResult:
        arguments = params.arguments or {}

        def user(content: types.ContentBlock) -> types.PromptMessage:
            return types.PromptMessage(role="user", content=content)

        match params.name:
            case "test_simple_prompt" | "test_added_prompt":
                messages = [user(types.TextContent(text="This is a simple prompt for testing."))]
            case "test_prompt_with_arguments":
                line = f"Prompt with arguments: arg1='{arguments.get('arg1')}', arg2='{arguments.get('arg2')}'"
                messages = [user(types.TextContent(text=line))]
            case "test_prompt_with_embedded_resource":
                resource = types.TextResourceContents(
                    uri=arguments.get("resourceUri", "test://example-resource"),
                    mime_type="text/plain",
                    text="Embedded resource content for testing.",
                )
                messages = [
                    user(types.EmbeddedResource(resource=resource)),
                    user(types.TextContent(text="Please process the embedded resource above.")),
                ]
            case "test_prompt_with_image":
                messages = [
                    user(types.ImageContent(data=PNG_BASE64, mime_type="image/png")),
                    user(types.TextContent(text="Please analyze the image above.")),
                ]
            case "test_input_required_result_prompt":
                call = self._exchange(ctx, params.name, {}, params)
                question = elicit("What context should the prompt use?", {"context": {"type": "string"}})
                try:
                    answer = (await call.ask({"user_context": question}))["user_context"]
                except InputRequired as pending:
                    return pending.result
                messages = [user(types.TextContent(text=f"Answer using this context: {answered(answer, 'context')}"))]
            case _:
                raise MCPError(types.INVALID_PARAMS, f"Unknown prompt {params.name!r}.")
        return types.GetPromptResult(messages=messages)

    # --- completion and logging -----------------------------------------------------------------

    async def complete(self, ctx: Context, params: types.CompleteRequestParams) -> types.CompleteResult:
        candidates = ["paris", "park", "party", "test", "testing"]
        values = [value for value in candidates if value.startswith(params.argument.value)]
        return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))

    async def set_logging_level(self, ctx: Context, params: types.SetLevelRequestParams) -> types.EmptyResult:
        self.log_levels[_session_id(ctx) or ""] = params.level
        return types.EmptyResult()


def _tool(name: str, description: str, input_schema: dict[str, Any] = NO_ARGUMENTS) -> types.Tool:
    return types.Tool(name=name, description=description, input_schema=input_schema)


def _strings(**descriptions: str) -> dict[str, Any]:
    properties = {name: {"type": "string", "description": about} for name, about in descriptions.items()}
    return {"type": "object", "properties": properties, "required": list(descriptions)}


INPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    "test_sampling": _strings(prompt="The prompt to send to the LLM"),
    "test_elicitation": _strings(message="The message to show"),
    "json_schema_2020_12_tool": JSON_SCHEMA_2020_12,
    "test_custom_headers": MIRRORED_HEADER,
}
"""The arguments of the tools that take any (the others take none)."""
INPUT_SCHEMAS |= TASK_SCHEMAS


def _describe(answer: types.InputResponse | None) -> str:
    if not isinstance(answer, types.ElicitResult):
        return "action=none"
    return f"action={answer.action}, content={json.dumps(answer.content or {}, sort_keys=True)}"


def _session_id(ctx: Context) -> str | None:
    headers = getattr(ctx.request, "headers", None)
    return headers.get("mcp-session-id") if headers is not None else None


class ConformanceServer(Server[Any]):
    """A low-level `Server` that advertises list-change notifications on the handshake wire too."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        every_change = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
        return super().create_initialization_options(
            notification_options or every_change, experimental_capabilities, extensions
        )


def build_server() -> tuple[Server[Any], TasksExtension]:
    """The conformance upstream and its tasks extension (to be run while the server is served)."""
    bus = InMemorySubscriptionBus()
    fixtures = ConformanceFixtures(RequestStateSeal(secrets.token_bytes(32)), bus)
    server = ConformanceServer(
        "mcp-aggregator-conformance-upstream",
        version="1.0.0",
        cache_hints={method: CacheHint(ttl_ms=0, scope="public") for method in get_args(CacheableMethod)},
        on_list_tools=fixtures.list_tools,
        on_call_tool=fixtures.call_tool,
        on_list_resources=fixtures.list_resources,
        on_list_resource_templates=fixtures.list_resource_templates,
        on_read_resource=fixtures.read_resource,
        on_subscribe_resource=fixtures.subscribe,
        on_unsubscribe_resource=fixtures.unsubscribe,
        on_subscriptions_listen=ListenHandler(bus),
        on_list_prompts=fixtures.list_prompts,
        on_get_prompt=fixtures.get_prompt,
        on_completion=fixtures.complete,
        on_set_logging_level=fixtures.set_logging_level,
    )
    return server, install_tasks(server)


def build_app(host: str) -> Starlette:
    """The conformance upstream over streamable HTTP, its SSE streams resumable; its lifespan runs the tasks."""
    server, extension = build_server()
    app = server.streamable_http_app(host=host, event_store=MemoryEventStore(), retry_interval=100)
    serve = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Any]:
        async with extension.running(), serve(app) as state:
            yield state

    app.router.lifespan_context = lifespan
    return app


def announce_when_serving(app: Starlette, url: str) -> None:
    """Print `READY <url>` once the app's lifespan (the session manager) has started."""
    serve = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Any]:
        async with serve(app) as state:
            print(f"READY {url}", flush=True)
            yield state

    app.router.lifespan_context = lifespan


async def serve(host: str, port: int) -> None:
    listener = socket.create_server((host, port))
    bound_port = listener.getsockname()[1]
    display_host = f"[{host}]" if ":" in host else host
    app = build_app(host)
    announce_when_serving(app, f"http://{display_host}:{bound_port}/mcp")
    config = uvicorn.Config(app, http="h11", log_level="warning", lifespan="on")  # h11 strips header OWS
    await uvicorn.Server(config).serve(sockets=[listener])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the READY line)")
    arguments = parser.parse_args()
    asyncio.run(serve(arguments.host, arguments.port))


if __name__ == "__main__":
    main()
