"""The passthrough decision on JSON-RPC bodies (the HTTP side is tested through nginx in tests/nginx)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aggregator.errors import AccessDeniedError
from aggregator.http.validate import check_messages, may_reach, read_messages
from aggregator.policy.principal import AuthMethod, Principal
from aggregator.policy.scopes import Policy, ScopesFile, ServerRule

POLICY = Policy(
    ScopesFile(
        scopes={
            "echo/call": (ServerRule(server="echo", methods=("tools/list", "tools/call"), tools=("echo", "add")),),
            "echo/fail": (ServerRule(server="echo", methods=("tools/call",), tools=("fail",)),),
            "wild": (ServerRule(server="echo-*", methods=("resources/read",)),),
        }
    )
)
ALICE = Principal("alice", "alice", "test", AuthMethod.GATEWAY_TOKEN, scopes=frozenset({"echo/call", "wild"}))


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def tool_call(name: str, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": {}}}


def decide(document: Any, server: str = "echo", **headers: str) -> list[str]:
    messages = read_messages(body(document), headers)
    check_messages(POLICY, ALICE, server, messages)
    return [message.method for message in messages]


def test_server_level_access_follows_the_rules_wildcards_included() -> None:
    assert may_reach(POLICY, ALICE, "echo")
    assert may_reach(POLICY, ALICE, "echo-sse")
    assert not may_reach(POLICY, ALICE, "weather")


def test_plumbing_notifications_and_answers_need_only_server_access() -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "s1", "result": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "ping"},
    ]
    assert decide(batch) == ["initialize", "notifications/initialized", "ping"]


def test_every_batch_element_is_checked() -> None:
    assert decide([tool_call("echo", 1), tool_call("add", 2)]) == ["tools/call", "tools/call"]
    with pytest.raises(AccessDeniedError) as refused:
        decide([tool_call("echo", 1), tool_call("fail", 2)])
    assert str(refused.value) == "Batch element 2: 'alice' may not call tool 'fail' of server 'echo'."
    assert refused.value.required_scope == "echo/fail"


def test_methods_without_a_rule_are_refused_by_name() -> None:
    with pytest.raises(AccessDeniedError, match=r"^'alice' may not use prompts/get on server 'echo'\.$"):
        decide({"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": "p"}})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "A POST without a JSON-RPC body cannot be authorised."),
        (b"{not json", "The request body is not JSON, so it cannot be authorised."),
        (b"[]", "An empty JSON-RPC batch cannot be authorised."),
        (b"[1]", "Batch element 1: a JSON-RPC message must be an object."),
        (body({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}), "tools/call names no tool."),
    ],
)
def test_bodies_that_cannot_be_judged_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(AccessDeniedError) as refused:
        read_messages(raw, {})
    assert str(refused.value) == reason


def test_modern_headers_must_match_the_body() -> None:
    assert decide(tool_call("echo"), **{"mcp-method": "tools/call", "mcp-name": "echo"}) == ["tools/call"]
    with pytest.raises(AccessDeniedError, match="Mcp-Name header says 'echo' but the body names 'fail'"):
        decide(tool_call("fail"), **{"mcp-method": "tools/call", "mcp-name": "echo"})
