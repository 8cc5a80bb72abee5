"""Class 3: one request cannot stall every caller.

Every check on a request body (size, JSON nesting depth, batch length, token count) is one linear
pass that stops at the first limit passed, and large bodies are checked off the event loop. Each
worst case below is a 4 MiB body sent to a real in-process gateway while a watcher keeps asking
`/healthz`: every `/healthz` must answer within a second, and every bad body gets its documented
4xx naming the limit. (Before the fix, an 80 KB body of escaped quotes blocked the loop for 34 s.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import pytest

from aggregator.policy.limits import BodyLimits, body_problem
from tests.harness import ERAS, Era, LiveGateway, serve_gateway, token_for
from tests.policies import USERS_MAY_DO_EVERYTHING

pytestmark = pytest.mark.anyio

SCOPES = USERS_MAY_DO_EVERYTHING
MIB = 1024 * 1024
MAX_BYTES = 4 * MIB
HEALTH_DEADLINE = 1.0  # seconds each /healthz may take while a worst-case body is being judged
REQUEST_DEADLINE = 60.0  # generous: the point is the /healthz deadline, not this one
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

TOO_LARGE = "Request body exceeds 4194304 bytes."
TOO_DEEP = "JSON nesting deeper than 64 levels."
TOO_LONG = "JSON-RPC batch longer than 32 messages."
TOO_MANY = "JSON body with more than 250000 tokens (strings, brackets and commas)."


def call_with(arguments_json: bytes) -> bytes:
    """A tools/call of echo__echo whose `arguments` value is `arguments_json`, as sent on the wire."""
    head = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo__echo","_meta":'
    return head + json.dumps(META).encode() + b',"arguments":' + arguments_json + b"}}"


def filled(prefix: bytes, unit: bytes, suffix: bytes, size: int = MAX_BYTES - 4096) -> bytes:
    """`prefix` + as many `unit`s as fit in `size` bytes + `suffix`."""
    return prefix + unit * ((size - len(prefix) - len(suffix)) // len(unit)) + suffix


def inside_call(unit: bytes, opening: bytes = b'{"text":"', closing: bytes = b'"}') -> bytes:
    """A 4 MiB tools/call whose arguments repeat `unit` between `opening` and `closing`."""
    shell = len(call_with(b""))
    return call_with(filled(opening, unit, closing, MAX_BYTES - 4096 - shell))


@dataclass(frozen=True)
class Case:
    """A worst-case body and what the caller must get: an HTTP status and, for refusals, the message.

    `status` None: the body passes the checks and MCP answers it (its arguments then meet their own
    limit; the status of that JSON-RPC error depends on the era). `message` None with a status: the
    JSON parser refuses the body (a parse error).
    """

    body: bytes
    status: int | None
    message: str | None


CASES: dict[str, Case] = {
    # The strings the old regular expression choked on: an escape per character, closed or not.
    "escaped quotes in a string": Case(inside_call(b'\\"'), None, None),
    "escaped quotes, string never closed": Case(filled(b'{"a":"', b'\\"', b""), 400, None),
    "escaped quotes outside any string": Case(filled(b"", b'\\"', b""), 400, None),
    "backslash run in a string": Case(inside_call(b"\\\\"), None, None),
    "backslash run, string never closed": Case(filled(b'{"a":"', b"\\\\", b"\\"), 400, None),
    "quotes only": Case(filled(b"", b'"', b""), 400, TOO_MANY),
    "long string": Case(inside_call(b"x"), None, None),
    "brackets inside a long string": Case(inside_call(b"[{"), None, None),
    "deep nesting": Case(filled(b"", b"[", b""), 400, TOO_DEEP),
    "deep nesting of objects": Case(filled(b"", b'{"a":', b""), 400, TOO_DEEP),
    "deep nesting after a long string": Case(filled(b'{"a":"' + b"x" * MIB + b'","b":', b"[", b""), 400, TOO_DEEP),
    "nesting just under the limit, repeated": Case(
        inside_call(b"[" * 60 + b"]" * 60 + b",", b"[", b"[]]"), 400, TOO_MANY
    ),
    "huge batch": Case(filled(b"[", b'{"jsonrpc":"2.0","method":"notifications/x"},', b"{}]"), 400, TOO_LONG),
    "huge batch of empty objects": Case(filled(b"[", b"{},", b"{}]"), 400, TOO_LONG),
    "many keys": Case(inside_call(b'"k":0,', b"{", b'"end":0}'), 400, TOO_MANY),
    "many tiny arrays": Case(inside_call(b"[],", b"[", b"[]]"), 400, TOO_MANY),
    "many numbers": Case(inside_call(b"0,", b"[", b"0]"), 400, TOO_MANY),
    "many empty strings": Case(inside_call(b'"",', b"[", b'""]'), 400, TOO_MANY),
    "one byte too many": Case(b" " * (MAX_BYTES + 1), 413, TOO_LARGE),
    "far too large": Case(b"[" * (MAX_BYTES + MIB), 413, TOO_LARGE),
}


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[LiveGateway]:
    servers = {"echo": {"transport": "streamable-http", "url": echo_url}}
    async with serve_gateway(tmp_path_factory.mktemp("checks"), servers=servers, scopes=SCOPES) as gateway:
        yield gateway


def client(live: LiveGateway) -> httpx2.AsyncClient:
    bearer = {"authorization": f"Bearer {token_for('mallory', groups=['users'])}"}
    return httpx2.AsyncClient(base_url=live.base, headers={**ACCEPT, **bearer}, trust_env=False, timeout=120)


async def era_headers(http: httpx2.AsyncClient, era: Era) -> dict[str, str]:
    """Headers that make a tools/call of echo__echo valid in `era` (a 2025-11-25 session is opened)."""
    if era == "auto":
        return {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "echo__echo"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "checks", "version": "0"}},
    }
    opened = await http.post("/mcp", json=initialize)
    assert opened.status_code == 200, opened.text
    session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": LEGACY}
    await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    return session


async def while_watching_health(live: LiveGateway, send: Any) -> tuple[httpx2.Response, int]:
    """Run `send()` while /healthz is asked again and again, each answer within `HEALTH_DEADLINE`.

    Returns the response and how many /healthz answers came while it was pending.
    """
    answered = 0
    done = anyio.Event()
    response: httpx2.Response | None = None

    async def watch() -> None:
        nonlocal answered
        async with httpx2.AsyncClient(base_url=live.base, trust_env=False) as http:
            while not done.is_set():
                with anyio.fail_after(HEALTH_DEADLINE):
                    health = await http.get("/healthz")
                assert health.status_code == 200
                answered += 1

    async def request() -> None:
        nonlocal response
        try:
            with anyio.fail_after(REQUEST_DEADLINE):
                response = await send()
        finally:
            done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        group.start_soon(request)
    assert response is not None
    return response, answered


def error_message(response: httpx2.Response) -> str:
    """The JSON-RPC error message of a JSON or single-event SSE answer."""
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line.removeprefix("data:") for line in text.splitlines() if line.startswith("data:"))
    message: str = json.loads(text)["error"]["message"]
    return message


async def still_serving(live: LiveGateway) -> None:
    async with live.client("alice", groups=["users"]) as mcp:
        result = await mcp.call_tool("echo__echo", {"text": "still here"})
    assert result.structured_content == {"result": "still here"}


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("name", list(CASES))
async def test_a_worst_case_body_on_mcp_is_judged_while_healthz_keeps_answering(
    live: LiveGateway, name: str, era: Era
) -> None:
    case = CASES[name]
    async with client(live) as http:
        headers = await era_headers(http, era)
        response, answered = await while_watching_health(
            live, lambda: http.post("/mcp", content=case.body, headers=headers)
        )
    assert answered >= 1
    if case.status is None:
        assert response.status_code in (200, 400), response.text[:300]
        assert error_message(response).endswith("bytes; the limit is 1048576.")
    else:
        assert response.status_code == case.status, response.text[:300]
    if case.message is not None:
        assert error_message(response) == case.message
    await still_serving(live)


REFUSED = [name for name, case in CASES.items() if case.message is not None]


@pytest.mark.parametrize("name", REFUSED)
async def test_a_worst_case_body_on_the_sse_transport_is_refused_with_the_limit(live: LiveGateway, name: str) -> None:
    case = CASES[name]
    async with client(live) as http:
        response, _ = await while_watching_health(
            live, lambda: http.post(f"/messages/?session_id={'0' * 32}", content=case.body)
        )
    assert response.status_code == case.status
    assert error_message(response) == case.message


@pytest.mark.parametrize("name", REFUSED)
async def test_a_worst_case_body_on_auth_validate_is_refused_with_the_limit(live: LiveGateway, name: str) -> None:
    """nginx relays only 401 and 403 from auth_request (anything else becomes a 500), so: 403."""
    case = CASES[name]
    async with client(live) as http:
        response, _ = await while_watching_health(
            live, lambda: http.post("/auth/validate", content=case.body, headers={"x-mcp-server": "echo"})
        )
    assert response.status_code == 403
    assert response.json()["error_description"] == f"{case.message} It cannot be authorised."
    assert json.loads(response.headers["x-mcp-auth-body"]) == response.json()


async def test_many_worst_case_bodies_at_once_leave_healthz_answering(live: LiveGateway) -> None:
    bodies = [CASES[name].body for name in ("escaped quotes, string never closed", "many keys", "deep nesting")] * 3
    statuses: list[int] = []

    async def one(http: httpx2.AsyncClient, body: bytes) -> None:
        headers = await era_headers(http, "auto")
        statuses.append((await http.post("/mcp", content=body, headers=headers)).status_code)

    async def send_all() -> httpx2.Response:
        async with client(live) as http, anyio.create_task_group() as group:
            for body in bodies:
                group.start_soon(one, http, body)
        return httpx2.Response(200)

    _, answered = await while_watching_health(live, send_all)
    assert answered >= 1
    assert sorted(statuses) == [400] * len(bodies)
    await still_serving(live)


LIMITS = BodyLimits(max_bytes=MAX_BYTES, max_depth=3, max_batch=2, max_tokens=20)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"a":[[1]]}', None),
        (b'{"a":[[[1]]]}', "JSON nesting deeper than 3 levels."),
        (b'{"a":"[[[[[[[[{{{{"}', None),
        (b'{"a":"\\"[[[[[[[["}', None),
        (b'{"a":"\\\\","b":[[[1]]]}', "JSON nesting deeper than 3 levels."),
        (b'{"a":"\\\\\\"[[[["}', None),
        (b'["\\u005b[[[[", 1]', None),
        (b"[1, 2]", None),
        (b"[1, 2, 3]", "JSON-RPC batch longer than 2 messages."),
        (b' \n\t[{"a": [1, 2, 3, 4]}, 2]', None),
        (b'{"a": [1, 2, 3]}', None),
        (b'{"a": "' + b"x" * 1000 + b'"}', None),
        (b'["a","b"]', None),
        (b"[" + b",".join([b"[]"] * 2) + b"]", None),
        (
            b'{"a":[' + b",".join([b'"s"'] * 19) + b"]}",
            "JSON body with more than 20 tokens (strings, brackets and commas).",
        ),
        (b'{"a":"never closed [[[[[[', None),
    ],
    ids=[
        "at the depth limit",
        "one level too deep",
        "brackets in a string",
        "escaped quote then brackets in a string",
        "escaped backslash ends the string",
        "escaped backslash then escaped quote",
        "unicode escape of a bracket",
        "batch at the limit",
        "batch over the limit",
        "commas nested in a batch element",
        "commas of an inner array",
        "long string is one token",
        "two strings",
        "two empty arrays",
        "too many tokens",
        "unterminated string",
    ],
)
def test_the_scanner_reads_json_strings_as_a_parser_does(body: bytes, problem: str | None) -> None:
    assert body_problem(body, LIMITS) == problem
