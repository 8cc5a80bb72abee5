"""Resumable SSE streams (2025-11-25): a caller that drops a stream mid-call and comes back with
`Last-Event-ID` gets what it missed, only from its own session, from a store that stays bounded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest

from aggregator.server.events import MAX_EVENTS, RETRY_MILLISECONDS, Budget, SessionEvents, SessionEventStore
from examples.servers.echo import create_server
from tests.harness import LiveGateway, member_token, serve_asgi, serve_gateway, serve_upstream
from tests.policies import USERS_MAY_DO_EVERYTHING

pytestmark = pytest.mark.anyio

VERSION = "2025-11-25"
POST_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Event:
    id: str | None
    data: str
    retry: int | None = None

    @property
    def message(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed

    @property
    def progress(self) -> float | None:
        if not self.data or self.message.get("method") != "notifications/progress":
            return None
        return float(self.message["params"]["progress"])


async def events_of(response: httpx2.Response) -> AsyncIterator[Event]:
    """The SSE events of `response`, as they arrive."""
    fields: dict[str, str] = {}
    data: list[str] = []
    async for line in response.aiter_lines():
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
            continue
        if fields or data:
            retry = int(fields["retry"]) if "retry" in fields else None
            yield Event(fields.get("id"), "\n".join(data), retry)
        fields, data = {}, []


async def until_result(response: httpx2.Response) -> list[Event]:
    """The events of `response` up to the call's result (a resumed stream stays open after it)."""
    received: list[Event] = []
    async for event in events_of(response):
        received.append(event)
        if _is_result(event):
            break
    return received


@dataclass(frozen=True)
class Session:
    http: httpx2.AsyncClient
    id: str

    @property
    def headers(self) -> dict[str, str]:
        return {**POST_HEADERS, "mcp-session-id": self.id, "mcp-protocol-version": VERSION}

    def call_slow(self, seconds: float, tool: str = "echo__slow") -> Any:
        call = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {"seconds": seconds}, "_meta": {"progressToken": "slow"}},
        }
        return self.http.stream("POST", "/mcp", json=call, headers=self.headers)

    def resume(self, last_event_id: str) -> Any:
        headers = {"Accept": "text/event-stream", "mcp-session-id": self.id, "mcp-protocol-version": VERSION}
        return self.http.stream("GET", "/mcp", headers={**headers, "Last-Event-ID": last_event_id})


async def open_session(http: httpx2.AsyncClient) -> Session:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": {"name": "resume-test", "version": "1"},
        },
    }
    response = await http.post("/mcp", json=initialize, headers=POST_HEADERS)
    assert response.status_code == 200, response.text
    session = Session(http, response.headers["mcp-session-id"])
    initialized = await http.post(
        "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session.headers
    )
    assert initialized.status_code == 202
    return session


@pytest.fixture(scope="module", params=["lean", "sdk"])
async def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveGateway]:
    """The gateway in front of the echo upstream, with the lean path on (the default) or off."""
    async with (
        serve_upstream("echo") as echo,
        serve_gateway(
            tmp_path_factory.mktemp("resume"),
            servers={"echo": {"transport": "streamable-http", "url": echo}},
            scopes=USERS_MAY_DO_EVERYTHING,
            rate_limit_per_second=0,
            lean_path=request.param == "lean",
        ) as live,
    ):
        yield live


async def drop_after_progress(session: Session, seconds: float, count: int) -> list[Event]:
    """Call `slow` and read its stream until `count` progress notifications came; then hang up."""
    received: list[Event] = []
    async with session.call_slow(seconds) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in events_of(response):
            received.append(event)
            if sum(e.progress is not None for e in received) == count:
                break
    return received


async def test_a_dropped_call_resumes_with_what_it_missed(live: LiveGateway) -> None:
    async with live.http(member_token(["users"])) as http:
        session = await open_session(http)
        mark = len(live.log.lines)
        before = await drop_after_progress(session, 1.0, count=2)
        # The call goes on without its caller: wait until the gateway has answered it.
        await live.log.wait_for(r"request .*target=echo__slow outcome=ok", after=mark)
        async with session.resume(before[-1].id or "") as response:
            assert response.status_code == 200
            after = await until_result(response)

    priming = before[0]
    assert priming.id and priming.data == "" and priming.retry == RETRY_MILLISECONDS
    seen = [event.progress for event in before if event.progress is not None]
    missed = [event.progress for event in after if event.progress is not None]
    assert seen == [0.1, 0.2]
    assert missed == [round(0.1 * step, 3) for step in range(3, 11)]  # every one it missed, none twice
    result = next(event.message for event in after if _is_result(event))
    assert types.CallToolResult.model_validate(result["result"]).content[0].text == "Waited 1 s."  # type: ignore[union-attr]
    ids = [event.id for event in before + after if event.data]
    assert all(ids) and len(set(ids)) == len(ids)
    assert not any(session.id in (event_id or "") for event_id in ids)


async def test_an_event_id_of_another_session_or_principal_replays_nothing(live: LiveGateway) -> None:
    async with live.http(member_token(["users"])) as alice_http, live.http(member_token(["users", "b"])) as bob_http:
        alice = await open_session(alice_http)
        mark = len(live.log.lines)
        before = await drop_after_progress(alice, 0.5, count=1)
        await live.log.wait_for(r"request .*target=echo__slow outcome=ok", after=mark)
        stolen = before[-1].id or ""

        alice_again = await open_session(alice_http)
        bob = await open_session(bob_http)
        for other in (alice_again, bob):
            async with other.resume(stolen) as response:
                assert response.status_code == 200
                replayed = [event for event in await until_result(response) if event.data]
            assert replayed == []

        # Bob cannot take Alice's session either: it is bound to her credential.
        intruder = Session(bob_http, alice.id)
        async with intruder.resume(stolen) as response:
            assert response.status_code in (403, 404)
            body = await response.aread()
        assert b"Waited" not in body

        async with alice.resume(stolen) as response:  # while Alice herself still gets her result
            mine = await until_result(response)
        assert _is_result(mine[-1])


async def test_a_call_the_lean_path_serves_is_still_plain_json(live: LiveGateway) -> None:
    async with live.http(member_token(["users"])) as http:
        session = await open_session(http)
        call = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "echo__add", "arguments": {"a": 2, "b": 3}},
        }
        response = await http.post("/mcp", json=call, headers=session.headers)

    if live.gateway.settings.lean_path:
        assert response.headers["content-type"] == "application/json"
        assert response.json()["result"]["content"][0]["text"] == "5"
    else:  # the SDK's way: a numbered stream
        events = [event async for event in events_of(response)]
        assert events[0].id and events[0].data == "" and events[0].retry == RETRY_MILLISECONDS
        assert events[-1].id and events[-1].message["result"]["content"][0]["text"] == "5"


def _is_result(event: Event) -> bool:
    return bool(event.data) and "result" in event.message and event.message.get("id") == 7


def _message(number: int, size: int = 10) -> types.JSONRPCMessage:
    return types.JSONRPCNotification(
        jsonrpc="2.0", method="notifications/message", params={"level": "info", "data": "x" * size, "n": number}
    )


def test_a_session_keeps_at_most_its_bound_of_events() -> None:
    events = SessionEvents(max_events=MAX_EVENTS, max_bytes=1 << 20)
    ids = [events.add("7", _message(number)) for number in range(MAX_EVENTS + 10)]

    assert len(events.events) == MAX_EVENTS
    assert events.after(ids[0]) is None  # dropped: replays nothing
    stream, later = events.after(ids[-2]) or ("", [])
    assert stream == "7" and [event.event_id for event in later] == [ids[-1]]


def test_a_session_keeps_at_most_its_bound_of_bytes() -> None:
    events = SessionEvents(max_events=MAX_EVENTS, max_bytes=2000)
    ids = [events.add("7", _message(number, size=400)) for number in range(10)]

    assert events.size <= 2000
    assert events.after(ids[0]) is None
    assert events.after(ids[-1]) == ("7", [])
    oversized = events.add("7", _message(99, size=5000))
    assert events.after(oversized) is None and events.size <= 2000  # too big to keep at all


def test_all_sessions_together_keep_at_most_the_total_budget() -> None:
    budget = Budget(limit=3000)
    busy, other = SessionEvents(100, 2000, budget), SessionEvents(100, 2000, budget)
    for number in range(4):
        busy.add("1", _message(number, size=400))

    kept = [other.add("2", _message(number, size=400)) for number in range(6)]

    assert budget.used <= 3000 and budget.used == busy.size + other.size
    assert other.after(kept[0]) is None and other.after(kept[-1]) == ("2", [])  # its own oldest made room
    busy.clear()
    assert budget.used == other.size


def test_replay_only_sends_the_stream_of_the_given_event() -> None:
    events = SessionEvents(max_events=10, max_bytes=1 << 20)
    first = events.add("1", None)
    events.add("2", _message(1))
    kept = events.add("1", _message(2))

    stream, later = events.after(first) or ("", [])

    assert stream == "1" and [event.event_id for event in later] == [kept]


async def test_a_deleted_session_leaves_no_events_behind(tmp_path: Path) -> None:
    server = create_server()
    store = SessionEventStore()
    app = server.streamable_http_app(host="127.0.0.1", event_store=store, retry_interval=RETRY_MILLISECONDS)
    async with (
        serve_asgi(store.scoped(app, server.session_manager)) as url,
        httpx2.AsyncClient(base_url=url.removesuffix("/mcp"), trust_env=False) as http,
    ):
        session = await open_session(http)
        async with session.call_slow(0.2, tool="slow") as response:
            received = [event async for event in events_of(response)]
        assert received[0].data == "" and received[0].id
        buffer = store.buffer(session.id)
        assert buffer is not None and len(buffer.events) >= 3

        deleted = await http.delete("/mcp", headers=session.headers)

    assert deleted.status_code == 200
    assert store.buffer(session.id) is None and len(store) == 0
    assert store.budget.used == 0
