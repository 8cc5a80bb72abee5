"""Hostile callers against a real, secured gateway: every bad request gets a JSON-RPC or HTTP error that
gives nothing away, foreign origins are refused, sessions are unguessable and bound to their principal,
and the gateway keeps serving."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from aggregator.server.edge import RATE_LIMITED
from tests.conftest import REPOSITORY
from tests.harness import LiveGateway, connected, serve_upstreams, token_for
from tests.policies import USERS_MAY_DO_EVERYTHING

pytestmark = pytest.mark.anyio
SCOPES = USERS_MAY_DO_EVERYTHING
LIMITS = {
    "max_request_bytes": 65536,
    "max_json_depth": 16,
    "max_batch_length": 4,
    "max_argument_bytes": 16384,
    "max_calls_per_principal": 4,
}
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
# What must never appear in an answer: stack traces, source files, paths on this machine.
LEAKS = ("Traceback", 'File "', ".py", "site-packages", str(REPOSITORY), "/tmp/")


@pytest.fixture(scope="module")
async def hostile(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[LiveGateway]:
    async with serve_upstreams(
        tmp_path_factory.mktemp("hostile"), {"echo": echo_url}, scopes=SCOPES, limits=LIMITS
    ) as live:
        await live.wait_until(connected("echo"))
        yield live


def bearer(subject: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token_for(subject, groups=['users'])}"}


@asynccontextmanager
async def http(subject: str = "mallory") -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(headers={**ACCEPT, **bearer(subject)}, trust_env=False, timeout=30) as client:
        yield client


@asynccontextmanager
async def connect(url: str, subject: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=bearer(subject), trust_env=False) as transport,
        Client(streamable_http_client(url, http_client=transport)) as client,
    ):
        yield client


def request(method: str, params: dict[str, Any] | None = None, request_id: Any = 1) -> dict[str, Any]:
    """A 2026-07-28 request: its `_meta` envelope carries the protocol version and client capabilities."""
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": META}}


def routing(method: str, name: str | None = None, version: str = MODERN) -> dict[str, str]:
    """The 2026-07-28 routing headers that must match the body."""
    headers = {"mcp-protocol-version": version, "mcp-method": method}
    return headers | ({"mcp-name": name} if name is not None else {})


def clean(response: httpx2.Response) -> httpx2.Response:
    """`response`, once checked: not a server error, and nothing internal in its body."""
    assert response.status_code < 500, response.text
    for leak in LEAKS:
        assert leak not in response.text, f"{leak!r} in {response.text[:500]!r}"
    return response


def error_of(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC error in a JSON or SSE answer (an SSE answer may open with a priming event without data)."""
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = (line.removeprefix("data:").strip() for line in text.splitlines() if line.startswith("data:"))
        text = next(payload for payload in data if payload)
    error: dict[str, Any] = json.loads(text)["error"]
    return error


async def still_serving(hostile: LiveGateway) -> None:
    async with connect(hostile.url, "alice") as client:
        result = await client.call_tool("echo__echo", {"text": "still here"})
    assert result.structured_content == {"result": "still here"}


async def open_legacy_session(client: httpx2.AsyncClient, url: str) -> str:
    """Open a 2025-11-25 session (the `initialize` handshake); return its id."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}},
    }
    response = clean(await client.post(url, json=initialize))
    assert response.status_code == 200
    return response.headers["mcp-session-id"]


def session_headers(session: str) -> dict[str, str]:
    return {"mcp-session-id": session, "mcp-protocol-version": LEGACY}


ECHO = request("tools/call", {"name": "echo__echo", "arguments": {"text": "hi"}})


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", types.PARSE_ERROR),
        (b"", types.PARSE_ERROR),
        (b"\xff\xfe\x00garbage", types.PARSE_ERROR),
        (b"[]", types.INVALID_REQUEST),
        (b"42", types.INVALID_REQUEST),
        (b'"tools/call"', types.INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": 1}', types.INVALID_REQUEST),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', types.INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": {"an": "object"}, "method": "tools/list"}', types.INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 7}', types.INVALID_REQUEST),
    ],
    ids=[
        "not-json",
        "empty",
        "binary",
        "empty-batch",
        "number",
        "string",
        "no-method",
        "jsonrpc-1",
        "id-object",
        "method-7",
    ],
)
async def test_malformed_json_rpc_gets_a_json_rpc_error(hostile: LiveGateway, body: bytes, code: int) -> None:
    async with http() as client:
        response = clean(await client.post(hostile.url, content=body, headers=routing("tools/list")))
    assert response.status_code == 400
    assert error_of(response)["code"] == code


async def test_an_unknown_method_is_method_not_found_in_both_eras(hostile: LiveGateway) -> None:
    async with http() as client:
        modern = clean(await client.post(hostile.url, json=request("no/such"), headers=routing("no/such")))
        session = await open_legacy_session(client, hostile.url)
        unknown = {"jsonrpc": "2.0", "id": 2, "method": "no/such", "params": {}}
        legacy = clean(await client.post(hostile.url, json=unknown, headers=session_headers(session)))
        await client.delete(hostile.url, headers=session_headers(session))
    assert error_of(modern)["code"] == error_of(legacy)["code"] == types.METHOD_NOT_FOUND


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"mcp-protocol-version": MODERN, "mcp-name": "echo__echo"}, "mcp-method"),
        (routing("tools/list", "echo__echo"), "mcp-method"),
        (routing("tools/call", "echo__add"), "mcp-name"),
        (routing("tools/call"), "mcp-name"),
        (routing("tools/call", "echo__echo", version="2099-01-01"), "mcp-protocol-version"),
    ],
    ids=["no-method-header", "other-method", "other-name", "no-name-header", "other-version"],
)
async def test_headers_that_do_not_match_the_body_are_refused(
    hostile: LiveGateway, headers: dict[str, str], problem: str
) -> None:
    async with http() as client:
        response = clean(await client.post(hostile.url, json=ECHO, headers=headers))
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == types.HEADER_MISMATCH
    assert error["message"].startswith(f"{problem} header does not match")


async def test_unsupported_protocol_versions_are_refused_or_negotiated(hostile: LiveGateway) -> None:
    ancient = {
        "io.modelcontextprotocol/protocolVersion": "1999-01-01",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": ancient}}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "1999-01-01", "capabilities": {}, "clientInfo": {"name": "old", "version": "0"}},
    }
    async with http() as client:
        modern = clean(await client.post(hostile.url, json=body, headers=routing("tools/list", version="1999-01-01")))
        legacy = clean(await client.post(hostile.url, json=initialize))
        await client.delete(hostile.url, headers=session_headers(legacy.headers["mcp-session-id"]))
    assert modern.status_code == 400
    assert error_of(modern)["code"] == types.UNSUPPORTED_PROTOCOL_VERSION
    # A 2025-11-25 server answers an unknown version with the one it speaks; the client decides.
    answer = json.loads(next(line[5:] for line in legacy.text.splitlines() if line.startswith("data:")))
    assert answer["result"]["protocolVersion"] == LEGACY


async def test_oversized_deep_and_long_payloads_are_refused_before_they_cost_anything(hostile: LiveGateway) -> None:
    big_arguments = request("tools/call", {"name": "echo__echo", "arguments": {"text": "y" * 20_000}})
    async with http() as client:
        too_big = clean(await client.post(hostile.url, content=b"x" * 70_000, headers=routing("tools/list")))
        too_deep = clean(await client.post(hostile.url, content=b"[" * 500 + b"]" * 500))
        in_strings = request("no/such", {"x": "[" * 500})
        deep_in_strings = clean(await client.post(hostile.url, json=in_strings, headers=routing("no/such")))
        too_long = clean(await client.post(hostile.url, json=[ECHO] * (LIMITS["max_batch_length"] + 1)))
        arguments = clean(
            await client.post(hostile.url, json=big_arguments, headers=routing("tools/call", "echo__echo"))
        )
    assert too_big.status_code == 413
    assert error_of(too_big)["message"] == "Request body exceeds 65536 bytes."
    assert too_deep.status_code == 400
    assert error_of(too_deep)["message"] == "JSON nesting deeper than 16 levels."
    assert error_of(deep_in_strings)["code"] == types.METHOD_NOT_FOUND  # brackets inside strings are not nesting
    assert too_long.status_code == 400
    assert error_of(too_long)["message"] == "JSON-RPC batch longer than 4 messages."
    assert error_of(arguments) == {
        "code": types.INVALID_PARAMS,
        "message": "The arguments of 'echo__echo' are 20011 bytes; the limit is 16384.",
    }
    await still_serving(hostile)


async def test_bad_tokens_get_a_challenge_and_nothing_else(hostile: LiveGateway) -> None:
    cases = [
        {},
        {"authorization": "Bearer not-a-jwt"},
        {"authorization": "Bearer " + "a" * 20_000},
        {"authorization": "Basic x"},
    ]
    async with httpx2.AsyncClient(headers=ACCEPT, trust_env=False) as client:
        for headers in cases:
            response = clean(await client.post(hostile.url, json=ECHO, headers=headers))
            assert response.status_code == 401
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith("Bearer ")
            assert f'resource_metadata="{hostile.base}/.well-known/oauth-protected-resource/mcp"' in challenge


async def test_a_flood_of_requests_is_answered_and_the_gateway_keeps_serving(hostile: LiveGateway) -> None:
    bodies: list[tuple[bytes, dict[str, str]]] = [
        (json.dumps(ECHO).encode(), routing("tools/call", "echo__echo")),
        (b"{not json", {}),
        (b"[" * 100 + b"]" * 100, {}),
        (json.dumps(request("no/such")).encode(), routing("no/such")),
        (json.dumps(ECHO).encode(), routing("tools/list")),
    ]
    statuses: list[int] = []

    async def send(client: httpx2.AsyncClient, index: int) -> None:
        body, headers = bodies[index % len(bodies)]
        statuses.append(clean(await client.post(hostile.url, content=body, headers=headers)).status_code)

    async with http() as client, anyio.create_task_group() as flood:
        for index in range(500):
            flood.start_soon(send, client, index)
    assert len(statuses) == 500
    assert set(statuses) <= {200, 400, 404}
    await still_serving(hostile)
    async with httpx2.AsyncClient(trust_env=False) as client:
        assert (await client.get(f"{hostile.base}/healthz")).status_code == 200


async def test_concurrent_calls_of_one_principal_are_bounded_and_others_unaffected(hostile: LiveGateway) -> None:
    limit = LIMITS["max_calls_per_principal"]
    started = [anyio.Event() for _ in range(limit)]
    answers: list[str] = []

    async def slow(client: Client, index: int) -> None:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            started[index].set()

        result = await client.call_tool("echo__slow", {"seconds": 1.5}, progress_callback=on_progress)
        answers.append(str(result.structured_content))

    async with connect(hostile.url, "alice") as alice, anyio.create_task_group() as calls:
        for index in range(limit):
            calls.start_soon(slow, alice, index)
        with anyio.fail_after(20):
            for event in started:
                await event.wait()
        with pytest.raises(MCPError) as caught:
            await alice.call_tool("echo__echo", {"text": "one too many"})
        async with connect(hostile.url, "bob") as bob:
            assert (await bob.call_tool("echo__echo", {"text": "bob"})).structured_content == {"result": "bob"}
    assert caught.value.code == RATE_LIMITED
    assert caught.value.message == f"Too many concurrent calls for 'alice' (limit {limit})."
    assert answers == ["{'result': 'Waited 1.5 s.'}"] * limit


@pytest.mark.parametrize(
    "header", [{"origin": "http://evil.example"}, {"host": "evil.example"}], ids=["origin", "host"]
)
async def test_a_foreign_origin_or_host_is_refused_everywhere(hostile: LiveGateway, header: dict[str, str]) -> None:
    status = 403 if "origin" in header else 421
    async with http() as client:
        mcp = clean(
            await client.post(hostile.url, json=ECHO, headers={**routing("tools/call", "echo__echo"), **header})
        )
        sse = clean(await client.get(f"{hostile.base}/sse", headers=header))
        messages = clean(
            await client.post(f"{hostile.base}/messages/?session_id={'0' * 32}", json=ECHO, headers=header)
        )
    assert (mcp.status_code, sse.status_code, messages.status_code) == (status, status, status)
    await still_serving(hostile)


async def test_session_ids_are_unguessable(hostile: LiveGateway) -> None:
    async with http() as client:
        sessions = [await open_legacy_session(client, hostile.url) for _ in range(64)]
        for session in sessions:
            await client.delete(hostile.url, headers=session_headers(session))
    assert len(set(sessions)) == len(sessions)
    assert all(re.fullmatch(r"[0-9a-f]{32}", session) for session in sessions)
    # Count the bits that vary across the sample: a fixed hex digit carries none, a varying one four
    # (uuid4's variant digit only two). The SDK's uuid4 ids carry 122 random bits from os.urandom.
    varying = [len({session[position] for session in sessions}) for position in range(32)]
    random_bits = sum(4 if count > 4 else 2 if count > 1 else 0 for count in varying)
    assert random_bits >= 122


async def test_a_session_is_bound_to_the_principal_that_created_it(hostile: LiveGateway) -> None:
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    async with http("alice") as alice, http("bob") as bob:
        session = await open_legacy_session(alice, hostile.url)
        headers = session_headers(session)
        stolen = clean(await bob.post(hostile.url, json=listing, headers=headers))
        stolen_stream = clean(await bob.get(hostile.url, headers={**headers, "accept": "text/event-stream"}))
        stolen_delete = clean(await bob.delete(hostile.url, headers=headers))
        own = clean(await alice.post(hostile.url, json=listing, headers=headers))
        await alice.delete(hostile.url, headers=headers)
    assert (stolen.status_code, stolen_stream.status_code, stolen_delete.status_code) == (404, 404, 404)
    assert error_of(stolen)["message"] == "Session not found"
    assert own.status_code == 200
    assert "echo__echo" in own.text


async def test_no_hostile_request_left_a_traceback_in_the_gateway_log(hostile: LiveGateway) -> None:
    assert "Traceback" not in hostile.log.output
    assert "Exception in ASGI application" not in hostile.log.output
