"""The LLM backends' mappings, offline: Bedrock and the Anthropic API cannot be reached from here.

Bedrock goes through a real boto3 client whose network layer is botocore's `Stubber`, so every
request is validated against the Converse API's own service model. The Anthropic client is the
real SDK over an `httpx2.MockTransport` that answers like the Messages API.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import boto3
import httpx2
import pytest
from botocore.stub import Stubber

from examples.agent.anthropic_api import AnthropicModel
from examples.agent.bedrock import BedrockModel, converse_request
from examples.agent.conversation import Entry, ModelTurn, ToolCall, ToolResult, ToolResults, UserMessage
from examples.agent.errors import ModelError
from examples.agent.gateway import FINDER_SPEC

pytestmark = pytest.mark.anyio
MODEL_ID = "us.anthropic.claude-sonnet-4-6"
FIND = ToolCall("call-1", "intelligent_tool_finder", {"query": "weather forecast", "top_k": 5})
CONVERSATION: list[Entry] = [
    UserMessage("What's the weather in Lisbon?"),
    ModelTurn("Let me find a tool.", (FIND,)),
    ToolResults((ToolResult("call-1", FIND.name, {"mode": "hybrid", "note": None, "tools": []}),)),
    ModelTurn("", (ToolCall("call-2", "weather__get_forecast", {"city": "Lisbon"}),)),
    ToolResults((ToolResult("call-2", "weather__get_forecast", "upstream timed out", is_error=True),)),
]


def bedrock_client() -> Any:
    return boto3.client(
        "bedrock-runtime", region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


async def test_bedrock_sends_a_valid_converse_request_and_reads_tool_calls() -> None:
    client = bedrock_client()
    request = converse_request(MODEL_ID, "system prompt", CONVERSATION, [FINDER_SPEC], 512)
    answer = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"text": "Trying again."},
                    {"toolUse": {"toolUseId": "tu-9", "name": "weather__get_forecast", "input": {"city": "Lisbon"}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        "metrics": {"latencyMs": 12},
    }
    with Stubber(client) as stub:
        stub.add_response("converse", answer, request)
        turn = await BedrockModel(MODEL_ID, client=client, max_tokens=512).respond(
            "system prompt", CONVERSATION, [FINDER_SPEC]
        )
        stub.assert_no_pending_responses()
    assert turn == ModelTurn("Trying again.", (ToolCall("tu-9", "weather__get_forecast", {"city": "Lisbon"}),))
    blocks = [message["content"][0] for message in request["messages"] if message["role"] == "user"]
    results = [block["toolResult"] for block in blocks if "toolResult" in block]
    assert results[0]["content"] == [{"json": {"mode": "hybrid", "note": None, "tools": []}}]
    assert (results[1]["content"], results[1]["status"]) == ([{"text": "upstream timed out"}], "error")


async def test_bedrock_errors_become_model_errors() -> None:
    client = bedrock_client()
    with Stubber(client) as stub:
        stub.add_client_error("converse", "AccessDeniedException", "You don't have access to the model.")
        with pytest.raises(ModelError, match=rf"Bedrock converse with {MODEL_ID} failed: .*AccessDeniedException"):
            await BedrockModel(MODEL_ID, client=client).respond("s", CONVERSATION[:1], [FINDER_SPEC])


def anthropic_client(handler: Any) -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return anthropic.AsyncAnthropic(
        api_key="test-key", base_url="http://anthropic.test", http_client=http, max_retries=0
    )


async def test_anthropic_sends_the_conversation_and_reads_tool_calls() -> None:
    requests: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return httpx2.Response(
            200,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-6",
                "content": [
                    {"type": "text", "text": "Calling it."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather__get_forecast", "input": {"city": "Lisbon"}},
                ],
                "stop_reason": "tool_use",
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 5},
            },
        )

    model = AnthropicModel("claude-sonnet-4-6", client=anthropic_client(answer), max_tokens=256)
    turn = await model.respond("system prompt", CONVERSATION, [FINDER_SPEC])

    assert turn == ModelTurn("Calling it.", (ToolCall("toolu_1", "weather__get_forecast", {"city": "Lisbon"}),))
    (request,) = requests
    assert request.url.path == "/v1/messages" and "anthropic-version" in request.headers
    body = json.loads(request.content)
    assert (body["model"], body["max_tokens"], body["system"]) == ("claude-sonnet-4-6", 256, "system prompt")
    assert body["tools"] == [
        {"name": FINDER_SPEC.name, "description": FINDER_SPEC.description, "input_schema": FINDER_SPEC.input_schema}
    ]
    assert [message["role"] for message in body["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert body["messages"][1]["content"][1] == {
        "type": "tool_use",
        "id": "call-1",
        "name": FIND.name,
        "input": FIND.arguments,
    }
    assert body["messages"][4]["content"] == [
        {"type": "tool_result", "tool_use_id": "call-2", "content": "upstream timed out", "is_error": True}
    ]


async def test_anthropic_errors_become_model_errors() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        error = {"type": "authentication_error", "message": "invalid x-api-key"}
        return httpx2.Response(401, json={"type": "error", "error": error})

    model = AnthropicModel("claude-sonnet-4-6", client=anthropic_client(refuse))
    with pytest.raises(ModelError, match=r"The Anthropic API failed for claude-sonnet-4-6: .*invalid x-api-key"):
        await model.respond("s", CONVERSATION[:1], [FINDER_SPEC])
