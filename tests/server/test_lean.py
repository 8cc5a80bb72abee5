"""The lean relay path answers exactly as the SDK path does: a differential test, both eras.

Two gateways run side by side on the same upstreams and policy, one with `lean_path` on and one
with it off. The same sequence of requests (allowed, denied, unknown tool, wrong arguments, tool
error, upstream timeout, upstream gone, upstream never connected, rate-limited, tools/list, and
the same over stdio) goes to each over raw HTTP, so every JSON-RPC message is compared whole: the
answers must be JSON-equal, with the same HTTP status (2026-07-28), and the two gateways must
write the same audit records and count the same metrics. The lean gateway must have served the
requests itself, or the comparison proves nothing. (A rate-limit refusal's retry time counts the
time since the caller's last call, so only its number may differ.)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from starlette.routing import Route

from aggregator.http.app import create_app
from aggregator.policy.principal import AuthMethod, Principal
from aggregator.policy.reload import PolicyHolder
from aggregator.policy.revocation import RevocationList
from aggregator.server.gateway import Gateway
from aggregator.server.lean import DecisionCache, LeanApp
from aggregator.upstreams.pool import UpstreamPool
from tests.conftest import REPOSITORY
from tests.harness import (
    ERAS,
    Era,
    build_test_gateway,
    connected,
    free_port,
    serve_asgi,
    serve_upstream,
    token_for,
)

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
SCOPES = """
group_mappings:
  users: [echo-users]
echo-users:
  - server: echo
    methods: [tools/list, tools/call]
    tools: [echo, fail, slow]
  - server: gone
    methods: [tools/list, tools/call]
    tools: ["*"]
  - server: never
    methods: [tools/list, tools/call]
    tools: ["*"]
  - server: pipe
    methods: [tools/list, tools/call]
    tools: [echo, fail, slow]
"""
STDIO_ECHO = "from examples.servers.echo import create_server; create_server().run('stdio')"

# (case, caller, method, params): each caller is its own principal, so the rate limit (a burst of
# 2, no refill to speak of) bites exactly where the table says, in both gateways.
SEQUENCE: list[tuple[str, str, str, dict[str, Any]]] = [
    ("list", "ann", "tools/list", {}),
    ("allowed", "ann", "tools/call", {"name": "echo__echo", "arguments": {"text": "hello"}}),
    ("allowed, unicode", "ben", "tools/call", {"name": "echo__echo", "arguments": {"text": "h\u00e9llo \u2603"}}),
    ("denied", "cat", "tools/call", {"name": "echo__add", "arguments": {"a": 1, "b": 2}}),
    ("unknown tool", "dan", "tools/call", {"name": "echo__ech", "arguments": {"text": "x"}}),
    ("no such server", "dan", "tools/call", {"name": "nope__echo", "arguments": {}}),
    ("wrong arguments", "eve", "tools/call", {"name": "echo__echo", "arguments": {"txt": 1}}),
    ("wrong argument type", "eve", "tools/call", {"name": "echo__slow", "arguments": {"seconds": "soon"}}),
    ("tool error", "fay", "tools/call", {"name": "echo__fail", "arguments": {"message": "boom"}}),
    ("upstream timeout", "gus", "tools/call", {"name": "echo__slow", "arguments": {"seconds": 3}}),
    ("upstream gone", "hal", "tools/call", {"name": "gone__echo", "arguments": {"text": "x"}}),
    ("never connected", "ida", "tools/call", {"name": "never__echo", "arguments": {"text": "x"}}),
    ("stdio allowed", "lou", "tools/call", {"name": "pipe__echo", "arguments": {"text": "over the pipe"}}),
    ("stdio wrong arguments", "lou", "tools/call", {"name": "pipe__echo", "arguments": {}}),
    ("stdio tool error", "mia", "tools/call", {"name": "pipe__fail", "arguments": {"message": "pipe boom"}}),
    ("stdio timeout", "mia", "tools/call", {"name": "pipe__slow", "arguments": {"seconds": 3}}),
    ("stdio after timeout", "ned", "tools/call", {"name": "pipe__echo", "arguments": {"text": "still there"}}),
    ("rate: first", "jon", "tools/call", {"name": "echo__echo", "arguments": {"text": "1"}}),
    ("rate: second", "jon", "tools/call", {"name": "echo__echo", "arguments": {"text": "2"}}),
    ("rate: limited", "jon", "tools/call", {"name": "echo__echo", "arguments": {"text": "3"}}),
    ("list after calls", "kim", "tools/list", {}),
]
VOLATILE_AUDIT = {"time", "latency_ms"}


@dataclass(frozen=True, slots=True)
class Served:
    """One in-process gateway and its lean app (None when the lean path is off)."""

    url: str
    gateway: Gateway
    lean: LeanApp | None


@asynccontextmanager
async def serve(directory: Path, servers: dict[str, Any], *, lean: bool) -> AsyncIterator[Served]:
    """A secured gateway in-process, as `tests.harness.serve_gateway` builds it, keeping its app."""
    gateway = build_test_gateway(
        directory,
        servers=servers,
        scopes=SCOPES,
        lean_path=lean,
        rate_limit_per_second=0.001,
        rate_limit_burst=2,
        backoff_initial=60,
    )
    app = create_app(gateway)
    endpoint = next(route.app for route in app.router.routes if isinstance(route, Route) and route.path == "/mcp")
    async with serve_asgi(app) as url:
        with anyio.fail_after(60):
            await gateway.pool.wait_until(connected(*(name for name in servers if name != "never")))
            await gateway.pool.wait_until(UpstreamPool.all_settled)
        yield Served(url, gateway, endpoint if isinstance(endpoint, LeanApp) else None)


class RawCaller:
    """A hand-made MCP client over raw HTTP, so every message on the wire can be compared."""

    def __init__(self, http: httpx2.AsyncClient, url: str, era: Era) -> None:
        self._http, self._url, self._era = http, url, era
        self._session: str | None = None
        self._ids = iter(range(1, 1000))

    async def open(self) -> None:
        if self._era == "auto":
            return
        initialize = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        }
        response = await self._post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize})
        self._session = response.headers["mcp-session-id"]
        await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def request(self, method: str, params: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
        """(HTTP status, the JSON-RPC messages of the answer, in order)."""
        return await self.request_shaped(method, params, {}, {}, "single")

    async def request_shaped(
        self, method: str, params: dict[str, Any], meta: dict[str, Any], extra: dict[str, str], shape: str
    ) -> tuple[int, list[dict[str, Any]]]:
        """`request`, with extra `_meta` keys and headers, as one message, a batch, or with `?tools=discover`."""
        params = json.loads(json.dumps(params))
        headers: dict[str, str] = {}
        if self._era == "auto":
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            }
            headers = {"mcp-protocol-version": MODERN, "mcp-method": method}
            if "name" in params:
                headers["mcp-name"] = params["name"]
        if meta:
            params["_meta"] = {**params.get("_meta", {}), **meta}
        message: Any = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        if shape == "batch":
            message = [message]
        url = self._url + ("?tools=discover" if shape == "discover" else "")
        response = await self._post(message, {**headers, **extra}, url)
        return response.status_code, _messages(response) if response.content else []

    async def _post(
        self, message: Any, headers: dict[str, str] | None = None, url: str | None = None
    ) -> httpx2.Response:
        sent = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if self._session is not None:
            sent["mcp-session-id"] = self._session
            sent["mcp-protocol-version"] = "2025-11-25"
        sent.update(headers or {})
        return await self._http.post(url or self._url, content=json.dumps(message), headers=sent)


def _messages(response: httpx2.Response) -> list[dict[str, Any]]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        # The SDK's streams open with a priming event (an id and empty data) that carries no message.
        lines = response.text.splitlines()
        messages = [json.loads(line[5:]) for line in lines if line.startswith("data:") and line[5:].strip()]
    else:
        answer = response.json()
        messages = answer if isinstance(answer, list) else [answer]
    return [_timeless(message) for message in messages]


def _timeless(message: dict[str, Any]) -> dict[str, Any]:
    """A rate-limit refusal without its retry time, which counts the time since the last call."""
    error = message.get("error")
    if isinstance(error, dict) and error.get("code") == -32029 and "retryAfterSeconds" in (error.get("data") or {}):
        error["message"] = re.sub(r"retry after [0-9.]+ s", "retry after N s", error["message"])
        error["data"]["retryAfterSeconds"] = "N"
    return message


async def run_sequence(served: Served, era: Era) -> list[tuple[str, int, list[dict[str, Any]]]]:
    answers = []
    async with AsyncExitStack() as stack:
        callers: dict[str, RawCaller] = {}
        for case, who, method, params in SEQUENCE:
            if who not in callers:
                token = token_for(who, groups=["users"])
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30, trust_env=False)
                )
                callers[who] = RawCaller(http, served.url, era)
                await callers[who].open()
            status, messages = await callers[who].request(method, params)
            answers.append((case, status, messages))
    return answers


def audit_records(gateway: Gateway) -> list[dict[str, Any]]:
    path = gateway.settings.data_dir / "audit.log"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{key: value for key, value in record.items() if key not in VOLATILE_AUDIT} for record in records]


def counted(gateway: Gateway) -> dict[str, Any]:
    metrics = gateway.guard.metrics
    assert metrics is not None
    requests = {" ".join(labels): value for _, _, labels, value in metrics.requests.samples()}
    errors = {" ".join(labels): value for _, _, labels, value in metrics.errors.samples()}
    return {"requests": requests, "errors": errors}


@pytest.mark.parametrize("era", ERAS)
async def test_lean_and_sdk_paths_answer_alike(tmp_path: Path, era: Era) -> None:
    async with serve_upstream("echo") as echo, AsyncExitStack() as stack:
        gone_scope = anyio.CancelScope()
        gone_url: list[str] = []
        gone_ready = anyio.Event()

        async def gone_upstream() -> None:
            with gone_scope:
                async with serve_upstream("echo") as url:
                    gone_url.append(url)
                    gone_ready.set()
                    await anyio.sleep_forever()

        group = await stack.enter_async_context(anyio.create_task_group())
        group.start_soon(gone_upstream)
        await gone_ready.wait()
        servers = {
            "echo": {"transport": "streamable-http", "url": echo, "timeout": 1.0},
            "gone": {"transport": "streamable-http", "url": gone_url[0]},
            "never": {"transport": "streamable-http", "url": f"http://127.0.0.1:{free_port()}/mcp"},
            "pipe": {
                "transport": "stdio",
                "command": sys.executable,
                "args": ["-c", STDIO_ECHO],
                "cwd": str(REPOSITORY),
                "timeout": 1.0,
            },
        }
        lean = await stack.enter_async_context(serve(tmp_path / "lean", servers, lean=True))
        sdk = await stack.enter_async_context(serve(tmp_path / "sdk", servers, lean=False))
        gone_scope.cancel()  # both gateways hold a session to it; now it is gone

        lean_answers = await run_sequence(lean, era)
        sdk_answers = await run_sequence(sdk, era)

        for (case, lean_status, lean_messages), (_, sdk_status, sdk_messages) in zip(
            lean_answers, sdk_answers, strict=True
        ):
            assert lean_messages == sdk_messages, case
            if era == "auto":
                assert lean_status == sdk_status, case
        outcomes = {case: messages[-1].get("error", {}).get("code") for case, _, messages in lean_answers}
        assert outcomes["allowed"] is None and outcomes["denied"] == -32602 and outcomes["rate: limited"] == -32029
        assert outcomes["upstream timeout"] == -32001 and outcomes["never connected"] == -32050
        assert audit_records(lean.gateway) == audit_records(sdk.gateway)
        assert counted(lean.gateway) == counted(sdk.gateway)
        assert lean.lean is not None and lean.lean.served == len(SEQUENCE)
        group.cancel_scope.cancel()


GRANTS = {
    "echo only": ("[echo]", {"echo": True, "fail": False}),
    "fail only": ("[fail]", {"echo": False, "fail": True}),
    "both": ("[echo, fail]", {"echo": True, "fail": True}),
    "pattern": ('["e*"]', {"echo": True, "fail": False}),
}


@pytest.mark.parametrize(("before", "after"), [("echo only", "fail only"), ("both", "pattern"), ("pattern", "both")])
def test_cached_decisions_follow_every_policy_reload(tmp_path: Path, before: str, after: str) -> None:
    scopes = tmp_path / "scopes.yml"
    rule = "group_mappings:\n  users: [s]\ns:\n  - server: echo\n    methods: [tools/call]\n    tools: {}\n"
    scopes.write_text(rule.format(GRANTS[before][0]))
    holder = PolicyHolder(scopes)
    cache = DecisionCache(holder)
    caller = Principal("zoe", "zoe", "tests", AuthMethod.GATEWAY_TOKEN, groups=frozenset({"users"}))
    for tool, allowed in GRANTS[before][1].items():
        assert cache.allows(caller, "echo", tool) is allowed
        assert cache.allows(caller, "echo", tool) is allowed  # now from the cache
    scopes.write_text(rule.format(GRANTS[after][0]) + "\n")  # another size: a new stamp even within one mtime tick
    assert holder.reload_if_changed()
    for tool, allowed in GRANTS[after][1].items():
        assert cache.allows(caller, "echo", tool) is allowed, (after, tool)


def test_a_revocation_drops_the_cached_decisions(tmp_path: Path) -> None:
    scopes = tmp_path / "scopes.yml"
    scopes.write_text("s:\n  - server: echo\n    methods: [tools/call]\n    tools: [echo]\n")
    revoked = tmp_path / "revoked.json"
    cache = DecisionCache(PolicyHolder(scopes), revoked)
    caller = Principal("zoe", "zoe", "tests", AuthMethod.GATEWAY_TOKEN, scopes=frozenset({"s"}))
    assert cache.allows(caller, "echo", "echo") and len(cache) == 1
    RevocationList(revoked).revoke("some-token-id")
    assert not cache.allows(caller, "echo", "fail") and len(cache) == 1  # started over: one new decision


# (case, era, extra params, extra headers, body shape): requests the lean path must leave to the SDK path.
FALLBACKS: list[tuple[str, Era, dict[str, Any], dict[str, str], str]] = [
    ("progress token", "legacy", {"_meta": {"progressToken": "p1"}}, {}, "single"),
    ("progress token", "auto", {"_meta": {"progressToken": "p1"}}, {}, "single"),
    ("batch", "legacy", {}, {}, "batch"),
    ("batch", "auto", {}, {}, "batch"),
    ("logging opt-in", "auto", {"_meta": {"io.modelcontextprotocol/logLevel": "info"}}, {}, "single"),
    (
        "caller can be asked (sampling)",
        "auto",
        {"_meta": {"io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}},
        {},
        "single",
    ),
    ("input retry", "auto", {"requestState": "opaque"}, {}, "single"),
    ("gateway's own tool", "legacy", {"name": "list_services", "arguments": {}}, {}, "single"),
    ("gateway's own tool", "auto", {"name": "list_services", "arguments": {}}, {}, "single"),
    ("Mcp-Name contradicts the body", "auto", {}, {"mcp-name": "echo__fail"}, "single"),
    ("unknown session", "legacy", {}, {"mcp-session-id": "not-a-session"}, "single"),
    ("discovery query", "auto", {}, {}, "discover"),
]


@pytest.mark.parametrize(
    ("case", "era", "extra", "headers", "shape"), FALLBACKS, ids=[f"{c}-{e}" for c, e, *_ in FALLBACKS]
)
async def test_what_the_lean_path_cannot_serve_identically_goes_the_sdk_way(
    tmp_path: Path, case: str, era: Era, extra: dict[str, Any], headers: dict[str, str], shape: str
) -> None:
    async with serve_upstream("echo") as echo, serve(tmp_path, _echo_only(echo), lean=True) as served:
        assert served.lean is not None
        token = token_for("ann", groups=["users"])
        async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, trust_env=False) as http:
            caller = RawCaller(http, served.url, era)
            await caller.open()
            passed = served.lean.passed
            params: dict[str, Any] = {"name": "echo__echo", "arguments": {"text": "hi"}}
            meta = extra.get("_meta", {})
            params.update({key: value for key, value in extra.items() if key != "_meta"})
            status, messages = await caller.request_shaped("tools/call", params, meta, headers, shape)
        assert served.lean.served == 0, case
        assert served.lean.passed == passed + 1, case
        assert status < 500 and messages, (case, status)


def _echo_only(echo: str) -> dict[str, Any]:
    return {"echo": {"transport": "streamable-http", "url": echo}}
