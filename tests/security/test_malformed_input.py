"""Class 8: malformed input always gets the documented 4xx and one log line, on every endpoint.

Requests are written byte for byte on a raw socket (so headers can carry any bytes at all) to a
real secured in-process gateway. For every endpoint x payload the table names the status; every
answer must be complete (never a reset connection), never a 5xx, every challenge header must be
printable ASCII, and the gateway must have logged exactly one refusal line for it, without a
traceback. Before the fix, non-Latin-1 text in a token's header or claims gave a 500 on `/mcp`,
`/v0.1`, `/metrics`, `/auth/validate` and `/sse`, and `/auth/validate` had no depth limit
(1,000 levels gave a 500).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import httpx2
import pytest

from tests.harness import LiveGateway, serve_gateway, token_for
from tests.logs import LogLines

pytestmark = pytest.mark.anyio

SCOPES = """
group_mappings:
  users: [echo-calls]
  operators: [operations, echo-calls]
UI-Scopes:
  operations:
    list_service: [all]
echo-calls:
- server: echo
  methods: ["*"]
  tools: [echo]
"""
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
REFUSAL_EVENTS = {"auth.rejected", "request.refused", "passthrough.denied", "http.refused"}
ANSWER_DEADLINE = 30.0
Header = tuple[bytes, bytes]


def segment(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def jwt(header: bytes, claims: bytes, signature: bytes = b"c2ln") -> bytes:
    """A compact JWT made of exactly these bytes (unsigned: the gateway must refuse it cleanly)."""
    return segment(header) + b"." + segment(claims) + b"." + signature


HS256 = b'{"alg":"HS256","kid":"tests","typ":"JWT"}'
CLAIMS = b'{"iss":"mcp-aggregator","aud":"mcp-aggregator","sub":"x","jti":"j","iat":1,"exp":4000000000}'

# The Authorization header values, as raw bytes on the wire.
BAD_TOKENS: dict[str, bytes] = {
    "no header": b"",
    "not bearer": b"Basic dXNlcjpwYXNz",
    "bearer without token": b"Bearer ",
    "not base64": b"Bearer @@@.###.$$$",
    "one segment": b"Bearer abc",
    "empty segments": b"Bearer ..",
    "cyrillic kid": b"Bearer " + jwt('{"alg":"HS256","kid":"ключ"}'.encode(), CLAIMS),
    "cyrillic issuer": b"Bearer " + jwt(HS256, '{"iss":"издатель"}'.encode()),
    "emoji issuer": b"Bearer " + jwt(HS256, '{"iss":"\U0001f600"}'.encode()),
    "latin-1 issuer": b"Bearer " + jwt(HS256, '{"iss":"émetteur"}'.encode()),
    "cyrillic algorithm": b"Bearer " + jwt('{"alg":"HS256к","kid":"tests"}'.encode(), CLAIMS),
    "cyrillic client of a trusted issuer": b"Bearer " + jwt(HS256, '{"iss":"mcp-aggregator","sub":"я"}'.encode()),
    "control characters in the issuer": b"Bearer " + jwt(HS256, b'{"iss":"a\\r\\nSet-Cookie: x=1\\u0000\\u001b[31m"}'),
    "quotes and backslashes in the kid": b"Bearer " + jwt(b'{"alg":"HS256","kid":"a\\"b\\\\c"}', CLAIMS),
    "huge issuer": b"Bearer " + jwt(HS256, b'{"iss":"' + b"i" * 9000 + b'"}'),
    "non-UTF-8 header": b"Bearer " + jwt(b'{"alg":"HS256","kid":"\xff\xfe"}', CLAIMS),
    "non-UTF-8 claims": b"Bearer " + jwt(HS256, b'{"iss":"\xc3\x28"}'),
    "header is a list": b"Bearer " + jwt(b"[1]", CLAIMS),
    "header is a string": b"Bearer " + jwt(b'"HS256"', CLAIMS),
    "header is null": b"Bearer " + jwt(b"null", CLAIMS),
    "claims are a list": b"Bearer " + jwt(HS256, b"[1, 2]"),
    "claims are a number": b"Bearer " + jwt(HS256, b"42"),
    "kid is a list": b"Bearer " + jwt(b'{"alg":"HS256","kid":["tests"]}', CLAIMS),
    "alg is an object": b"Bearer " + jwt(b'{"alg":{"a":1},"kid":"tests"}', CLAIMS),
    "alg none": b"Bearer " + jwt(b'{"alg":"none"}', CLAIMS, b""),
    "raw UTF-8 in the header line": "Bearer ключ.ключ.ключ".encode(),
    "raw bytes in the header line": b"Bearer \xff\xfe\xfd.\x80\x81.\xc0",
    "token too large": b"Bearer " + b"a" * 20_000,
}


@dataclass(frozen=True)
class Endpoint:
    method: bytes
    path: bytes
    headers: tuple[Header, ...] = ()
    body: bytes = b""


ECHO_CALL = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo__echo", "arguments": {"text": "x"}}}
).encode()
MODERN_CALL = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo__echo", "arguments": {"text": "x"}, "_meta": META},
    }
).encode()
JSON = (b"content-type", b"application/json")
ACCEPT = (b"accept", b"application/json, text/event-stream")
ROUTING = ((b"mcp-protocol-version", MODERN.encode()), (b"mcp-method", b"tools/call"), (b"mcp-name", b"echo__echo"))
FAKE_SESSION = b"/messages/?session_id=" + b"0" * 32

PROTECTED: dict[str, Endpoint] = {
    "POST /mcp (2026-07-28)": Endpoint(b"POST", b"/mcp", (JSON, ACCEPT, *ROUTING), MODERN_CALL),
    "POST /mcp (2025-11-25)": Endpoint(b"POST", b"/mcp", (JSON, ACCEPT), ECHO_CALL),
    "GET /mcp": Endpoint(b"GET", b"/mcp", ((b"accept", b"text/event-stream"),)),
    "DELETE /mcp": Endpoint(b"DELETE", b"/mcp", ((b"mcp-session-id", b"0" * 32),)),
    "GET /sse": Endpoint(b"GET", b"/sse", ((b"accept", b"text/event-stream"),)),
    "POST /messages/": Endpoint(b"POST", FAKE_SESSION, (JSON,), ECHO_CALL),
    "GET /v0.1/servers": Endpoint(b"GET", b"/v0.1/servers"),
    "GET /v0.1/servers/.../versions/latest": Endpoint(
        b"GET", b"/v0.1/servers/io.github.mcp-aggregator/echo/versions/latest"
    ),
    "GET /metrics": Endpoint(b"GET", b"/metrics"),
    "POST /auth/validate": Endpoint(b"POST", b"/auth/validate", ((b"x-mcp-server", b"echo"), JSON), ECHO_CALL),
}
PUBLIC: dict[str, tuple[Endpoint, int]] = {
    "GET /healthz": (Endpoint(b"GET", b"/healthz"), 200),
    "GET /readyz": (Endpoint(b"GET", b"/readyz"), 200),
    "GET /.well-known/oauth-protected-resource": (Endpoint(b"GET", b"/.well-known/oauth-protected-resource"), 200),
    "GET /.well-known/oauth-protected-resource/mcp": (
        Endpoint(b"GET", b"/.well-known/oauth-protected-resource/mcp"),
        200,
    ),
    "GET /v0.1/openapi.json": (Endpoint(b"GET", b"/v0.1/openapi.json"), 200),
}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[LiveGateway]:
    servers = {"echo": {"transport": "streamable-http", "url": echo_url}}
    async with serve_gateway(tmp_path_factory.mktemp("malformed"), servers=servers, scopes=SCOPES) as gateway:
        yield gateway


def bearer(groups: list[str]) -> Header:
    return (b"authorization", f"Bearer {token_for('mallory', groups=groups)}".encode())


async def send_raw(live: LiveGateway, method: bytes, path: bytes, headers: tuple[Header, ...], body: bytes) -> Answer:
    """Write one HTTP/1.1 request byte for byte; read the whole answer (fails on a reset or no answer).

    A `host` among `headers` replaces the gateway's own address in the Host line.
    """
    host, port = live.base.removeprefix("http://").rsplit(":", 1)
    host_line = next((value for name, value in headers if name == b"host"), f"{host}:{port}".encode())
    head = [method + b" " + path + b" HTTP/1.1", b"host: " + host_line, b"connection: close"]
    head += [name + b": " + value for name, value in headers if name != b"host"]
    if body or method == b"POST":
        head.append(b"content-length: " + str(len(body)).encode())
    received = bytearray()
    with anyio.fail_after(ANSWER_DEADLINE):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(b"\r\n".join(head) + b"\r\n\r\n" + body)
            while True:
                try:
                    received += await stream.receive()
                except anyio.EndOfStream:
                    break
                if answer := parse_answer(bytes(received), method):
                    return answer
    answer = parse_answer(bytes(received), method)
    assert answer is not None, f"no complete answer, got {bytes(received[:200])!r}"
    return answer


def parse_answer(data: bytes, method: bytes) -> Answer | None:
    """The answer in `data` once it is complete (by content-length, or by a first SSE event)."""
    head, separator, rest = data.partition(b"\r\n\r\n")
    if not separator:
        return None
    status_line, *lines = head.split(b"\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines)}
    status = int(status_line.split()[1])
    if b"content-length" in headers:
        if len(rest) < int(headers[b"content-length"]):
            return None
        return Answer(status, headers, rest[: int(headers[b"content-length"])])
    if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
        return Answer(status, headers, rest) if b"\n\n" in rest or b"\r\n\r\n" in rest else None
    return None


def assert_clean(answer: Answer) -> None:
    assert answer.status < 500, answer
    challenge = answer.headers.get(b"www-authenticate", b"")
    assert all(0x20 <= byte <= 0x7E for byte in challenge), challenge
    for name in (b"x-mcp-auth-body", b"www-authenticate"):
        assert all(0x20 <= byte <= 0x7E or byte == 0x09 for byte in answer.headers.get(name, b"")), name


def refusal_lines(log: LogLines, mark: int) -> list[logging.LogRecord]:
    return [r for r in log.records[mark:] if r.name.startswith("aggregator") and r.msg in REFUSAL_EVENTS]


def assert_logged_once(log: LogLines, mark: int, answer: Answer) -> None:
    """A refused request left exactly one refusal line and no traceback; an answered one needs none."""
    assert not [r for r in log.records[mark:] if r.exc_info], "a traceback was logged"
    if answer.status >= 400:
        lines = refusal_lines(log, mark)
        assert len(lines) == 1, [(r.msg, r.__dict__.get("path"), r.__dict__.get("status")) for r in lines]


@pytest.mark.parametrize("endpoint", list(PROTECTED))
@pytest.mark.parametrize("token", list(BAD_TOKENS))
async def test_a_bad_token_gets_a_401_with_an_ascii_challenge(live: LiveGateway, token: str, endpoint: str) -> None:
    target = PROTECTED[endpoint]
    authorization = ((b"authorization", BAD_TOKENS[token]),) if BAD_TOKENS[token] else ()
    mark = live.log.mark()
    answer = await send_raw(live, target.method, target.path, (*target.headers, *authorization), target.body)
    assert_clean(answer)
    assert answer.status == 401, answer
    assert answer.headers[b"www-authenticate"].startswith(b"Bearer ")
    assert b"/.well-known/oauth-protected-resource" in answer.headers[b"www-authenticate"]
    assert json.loads(answer.body)["error"] in ("invalid_request", "invalid_token")
    assert len(answer.body) < 1000  # a huge claim is not echoed back whole
    assert_logged_once(live.log, mark, answer)
    assert refusal_lines(live.log, mark)[0].msg == "auth.rejected"


@pytest.mark.parametrize("endpoint", list(PUBLIC))
@pytest.mark.parametrize("token", list(BAD_TOKENS))
async def test_a_bad_token_on_a_public_endpoint_changes_nothing(live: LiveGateway, token: str, endpoint: str) -> None:
    target, status = PUBLIC[endpoint]
    authorization = ((b"authorization", BAD_TOKENS[token]),) if BAD_TOKENS[token] else ()
    answer = await send_raw(live, target.method, target.path, (*target.headers, *authorization), target.body)
    assert_clean(answer)
    assert answer.status == status, answer
    if endpoint == "GET /readyz":
        assert json.loads(answer.body) == {"ready": True}


DEEP = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' + b"[" * 1000 + b"]" * 1000 + b"}"
BODIES: dict[str, tuple[bytes, tuple[Header, ...]]] = {
    "invalid UTF-8": (b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}', (JSON,)),
    "UTF-16": ('{"jsonrpc":"2.0","id":1,"method":"ping"}'.encode("utf-16"), (JSON,)),
    "not JSON": (b"{not json", (JSON,)),
    "empty": (b"", (JSON,)),
    "a string": (b'"tools/call"', (JSON,)),
    "a number": (b"42", (JSON,)),
    "null": (b"null", (JSON,)),
    "a batch": (b"[" + ECHO_CALL + b"," + ECHO_CALL + b"]", (JSON,)),
    "an empty batch": (b"[]", (JSON,)),
    "1,000 levels": (DEEP, (JSON,)),
    "over the size limit": (b" " * (4 * 1024 * 1024 + 1), (JSON,)),
    "text/plain": (ECHO_CALL, ((b"content-type", b"text/plain"),)),
    "no content type": (ECHO_CALL, ()),
    "a tool name with control characters": (ECHO_CALL.replace(b"echo__echo", b"echo\\r\\n\\u0000\\u043a"), (JSON,)),
}
# Status per endpoint; `/auth/validate` answers only 200, 401 or 403 (what nginx relays).
EXPECTED: dict[str, dict[str, int]] = {
    "invalid UTF-8": {"mcp": 400, "messages": 400, "validate": 403},
    "UTF-16": {"mcp": 400, "messages": 400, "validate": 403},
    "not JSON": {"mcp": 400, "messages": 400, "validate": 403},
    "empty": {"mcp": 400, "messages": 400, "validate": 403},
    "a string": {"mcp": 400, "messages": 400, "validate": 403},
    "a number": {"mcp": 400, "messages": 400, "validate": 403},
    "null": {"mcp": 400, "messages": 400, "validate": 403},
    "a batch": {"mcp": 400, "messages": 400, "validate": 200},
    "an empty batch": {"mcp": 400, "messages": 400, "validate": 403},
    "1,000 levels": {"mcp": 400, "messages": 400, "validate": 403},
    "over the size limit": {"mcp": 413, "messages": 413, "validate": 403},
    "text/plain": {"mcp": 400, "messages": 400, "validate": 200},
    "no content type": {"mcp": 400, "messages": 400, "validate": 200},
    "a tool name with control characters": {"mcp": 200, "messages": 202, "validate": 403},
}


async def legacy_session(live: LiveGateway, authorization: Header) -> tuple[Header, ...]:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}},
    }
    body = json.dumps(initialize).encode()
    answer = await send_raw(live, b"POST", b"/mcp", (JSON, ACCEPT, authorization), body)
    assert answer.status == 200, answer
    return ((b"mcp-session-id", answer.headers[b"mcp-session-id"]), (b"mcp-protocol-version", LEGACY.encode()))


@pytest.mark.parametrize("era", ["2026-07-28", "2025-11-25"])
@pytest.mark.parametrize("body", list(BODIES))
async def test_a_malformed_body_on_mcp_gets_its_4xx_and_one_line(live: LiveGateway, body: str, era: str) -> None:
    content, headers = BODIES[body]
    authorization = bearer(["users"])
    era_headers = ROUTING if era == MODERN else await legacy_session(live, authorization)
    mark = live.log.mark()
    answer = await send_raw(live, b"POST", b"/mcp", (*headers, ACCEPT, authorization, *era_headers), content)
    assert_clean(answer)
    expected = EXPECTED[body]["mcp"]
    if expected == 200 and era == MODERN:
        expected = 400  # 2026-07-28 answers a JSON-RPC error with its HTTP status
    assert answer.status == expected, answer
    assert_logged_once(live.log, mark, answer)


@pytest.mark.parametrize("body", list(BODIES))
async def test_a_malformed_body_on_the_sse_transport_gets_its_4xx_and_one_line(live: LiveGateway, body: str) -> None:
    content, headers = BODIES[body]
    token = token_for("mallory", groups=["users"])
    async with (
        httpx2.AsyncClient(base_url=live.base, headers={"authorization": f"Bearer {token}"}, trust_env=False) as http,
        http.stream("GET", "/sse") as stream,
    ):
        with anyio.fail_after(ANSWER_DEADLINE):
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("data:"):
                    endpoint = line.removeprefix("data:").strip().encode()
                    break
        mark = live.log.mark()
        answer = await send_raw(live, b"POST", endpoint, (*headers, bearer(["users"])), content)
    assert_clean(answer)
    assert answer.status == EXPECTED[body]["messages"], answer
    assert_logged_once(live.log, mark, answer)


@pytest.mark.parametrize("body", list(BODIES))
async def test_a_malformed_body_on_auth_validate_gets_a_403_and_one_line(live: LiveGateway, body: str) -> None:
    content, headers = BODIES[body]
    content = content.replace(b'"echo__echo"', b'"echo"')  # a passthrough call names the server's own tool
    mark = live.log.mark()
    validate_headers = (*headers, bearer(["users"]), (b"x-mcp-server", b"echo"))
    answer = await send_raw(live, b"POST", b"/auth/validate", validate_headers, content)
    assert_clean(answer)
    assert answer.status == EXPECTED[body]["validate"], answer
    if answer.status == 403:
        assert json.loads(answer.headers[b"x-mcp-auth-body"]) == json.loads(answer.body)
    assert_logged_once(live.log, mark, answer)


SERVER = b"x-mcp-server"
ODD_REQUESTS: dict[str, tuple[Endpoint, int]] = {
    "UTF-8 server name on /auth/validate": (
        Endpoint(b"POST", b"/auth/validate", ((SERVER, "сервер".encode()), JSON), ECHO_CALL),
        403,
    ),
    "quotes in the server name on /auth/validate": (
        Endpoint(b"POST", b"/auth/validate", ((SERVER, b'e"c\\ho'), JSON), ECHO_CALL),
        403,
    ),
    "UTF-8 Mcp-Method on /auth/validate": (
        Endpoint(b"POST", b"/auth/validate", ((SERVER, b"echo"), (b"mcp-method", "вызов".encode()), JSON), ECHO_CALL),
        403,
    ),
    "UTF-8 Mcp-Name on /mcp": (
        Endpoint(b"POST", b"/mcp", (JSON, ACCEPT, *ROUTING[:2], (b"mcp-name", "эхо".encode())), MODERN_CALL),
        400,
    ),
    "UTF-8 protocol version on /mcp": (
        Endpoint(b"POST", b"/mcp", (JSON, ACCEPT, (b"mcp-protocol-version", "2026-07-28й".encode())), MODERN_CALL),
        400,
    ),
    "UTF-8 session id on /mcp": (
        Endpoint(b"POST", b"/mcp", (JSON, ACCEPT, (b"mcp-session-id", "сессия".encode())), ECHO_CALL),
        404,
    ),
    "UTF-8 Host on /mcp": (Endpoint(b"POST", b"/mcp", (JSON, ACCEPT, (b"host", "хост".encode())), ECHO_CALL), 421),
    "foreign Origin on /mcp": (
        Endpoint(b"POST", b"/mcp", (JSON, ACCEPT, *ROUTING, (b"origin", b"http://evil.example")), MODERN_CALL),
        403,
    ),
    "bad session id on /messages/": (Endpoint(b"POST", b"/messages/?session_id=%ff%00", (JSON,), ECHO_CALL), 400),
    "unknown session on /messages/": (Endpoint(b"POST", FAKE_SESSION, (JSON,), ECHO_CALL), 404),
    "no session on /messages/": (Endpoint(b"POST", b"/messages/", (JSON,), ECHO_CALL), 400),
    "GET /messages/": (Endpoint(b"GET", FAKE_SESSION), 405),
    "PUT /mcp": (Endpoint(b"PUT", b"/mcp", (JSON,), ECHO_CALL), 405),
    "bad limit on /v0.1/servers": (Endpoint(b"GET", b"/v0.1/servers?limit=%ff"), 400),
    "huge limit on /v0.1/servers": (Endpoint(b"GET", b"/v0.1/servers?limit=" + b"9" * 5000), 400),
    "NUL cursor on /v0.1/servers": (Endpoint(b"GET", b"/v0.1/servers?cursor=%00"), 200),
    "control characters in a server name": (Endpoint(b"GET", b"/v0.1/servers/%0d%0a%1b/versions"), 404),
    "unknown /v0.1 path": (Endpoint(b"GET", b"/v0.1/%ff%fe"), 404),
    "POST /v0.1/servers": (Endpoint(b"POST", b"/v0.1/servers", (JSON,), b"{}"), 405),
    "POST /metrics": (Endpoint(b"POST", b"/metrics", (JSON,), b"{}"), 405),
    "GET /auth/validate": (Endpoint(b"GET", b"/auth/validate"), 405),
    "unknown path": (Endpoint(b"GET", b"/%ff%00/../../etc/passwd"), 404),
    "huge header": (Endpoint(b"GET", b"/v0.1/servers", ((b"x-padding", b"p" * 60_000),)), 200),
    "many headers": (Endpoint(b"GET", b"/v0.1/servers", tuple((b"x-h%d" % i, b"v") for i in range(500))), 200),
}


@pytest.mark.parametrize("name", list(ODD_REQUESTS))
async def test_odd_headers_paths_and_methods_get_their_4xx_and_one_line(live: LiveGateway, name: str) -> None:
    target, status = ODD_REQUESTS[name]
    mark = live.log.mark()
    answer = await send_raw(live, target.method, target.path, (*target.headers, bearer(["users"])), target.body)
    assert_clean(answer)
    assert answer.status == status, answer
    assert_logged_once(live.log, mark, answer)


async def test_no_malformed_request_left_a_traceback(live: LiveGateway) -> None:
    tracebacks = [r for r in live.log.records if r.exc_info and not r.name.startswith("httpx")]
    assert not tracebacks, [(r.name, r.getMessage()) for r in tracebacks]
