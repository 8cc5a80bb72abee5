"""Amazon Bedrock's Converse API as the agent's model (boto3; credentials from boto3's usual chain).

`converse_request` and `parse_response` are the whole mapping; the call itself runs in a worker
thread because boto3 blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import anyio
import boto3
from botocore.exceptions import BotoCoreError, ClientError

from examples.agent.conversation import Entry, ModelTurn, ToolCall, ToolResult, ToolResults, ToolSpec, UserMessage
from examples.agent.errors import ModelError

DEFAULT_MODEL_ID = "us.anthropic.claude-sonnet-4-6"
DEFAULT_REGION = "us-east-1"


class BedrockModel:
    """Takes turns with a Bedrock model through `bedrock-runtime` `converse`."""

    def __init__(self, model_id: str, *, region: str | None = None, client: Any = None, max_tokens: int = 1024) -> None:
        self._model_id = model_id
        if client is None:
            region = region or boto3.session.Session().region_name or DEFAULT_REGION
            client = boto3.client("bedrock-runtime", region_name=region)
        self._client = client
        self._max_tokens = max_tokens

    async def respond(self, system: str, conversation: Sequence[Entry], tools: Sequence[ToolSpec]) -> ModelTurn:
        request = converse_request(self._model_id, system, conversation, tools, self._max_tokens)
        try:
            response = await anyio.to_thread.run_sync(partial(self._client.converse, **request))
        except (BotoCoreError, ClientError) as error:
            raise ModelError(f"Bedrock converse with {self._model_id} failed: {error}") from None
        return parse_response(response)


def converse_request(
    model_id: str, system: str, conversation: Sequence[Entry], tools: Sequence[ToolSpec], max_tokens: int
) -> dict[str, Any]:
    """The keyword arguments of `converse` for this conversation."""
    return {
        "modelId": model_id,
        "system": [{"text": system}],
        "messages": [_message(entry) for entry in conversation],
        "inferenceConfig": {"maxTokens": max_tokens},
        "toolConfig": {
            "tools": [
                {"toolSpec": {"name": t.name, "description": t.description, "inputSchema": {"json": t.input_schema}}}
                for t in tools
            ]
        },
    }


def parse_response(response: dict[str, Any]) -> ModelTurn:
    """The model's turn in a `converse` response."""
    try:
        blocks = response["output"]["message"]["content"]
    except (KeyError, TypeError):
        raise ModelError("Bedrock answered without an output message.") from None
    text = "".join(block["text"] for block in blocks if "text" in block)
    calls = tuple(
        ToolCall(block["toolUse"]["toolUseId"], block["toolUse"]["name"], dict(block["toolUse"]["input"] or {}))
        for block in blocks
        if "toolUse" in block
    )
    return ModelTurn(text, calls)


def _message(entry: Entry) -> dict[str, Any]:
    if isinstance(entry, UserMessage):
        return {"role": "user", "content": [{"text": entry.text}]}
    if isinstance(entry, ToolResults):
        return {"role": "user", "content": [{"toolResult": _tool_result(result)} for result in entry.results]}
    content: list[dict[str, Any]] = [{"text": entry.text}] if entry.text else []
    content += [{"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}} for c in entry.tool_calls]
    return {"role": "assistant", "content": content}


def _tool_result(result: ToolResult) -> dict[str, Any]:
    # Bedrock's `json` block takes an object; anything else travels as text.
    block = {"json": result.content} if isinstance(result.content, dict) else {"text": result.as_text()}
    return {"toolUseId": result.call_id, "content": [block], "status": "error" if result.is_error else "success"}
