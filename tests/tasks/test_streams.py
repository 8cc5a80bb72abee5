"""`tasks.stream_hold`: a 2025-11-25 caller's long call outlives its POST stream (SEP-1699).

The gateway closes the caller's stream once the call has run `stream_hold` seconds; the call goes on
upstream, and a real client that reconnects with `Last-Event-ID` gets the answer on the resumed stream.
A resumed stream carries only the caller's own session's events; 2026-07-28 callers are answered as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError

from aggregator.config.tasks import TasksSettings
from tests.harness import LiveGateway, serve_upstreams, text_of, token_for
from tests.policies import ADMIN_SCOPES
from tests.server.test_resume import open_session, until_result
from tests.tasks.upstream import Signals
from tests.tasks.wire import DEADLINE, caller

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def polling(tmp_path_factory: pytest.TempPathFactory, gated: tuple[str, Signals]) -> AsyncIterator[LiveGateway]:
    """A gateway that holds a 2025-11-25 call's stream open at most 0.2 s."""
    async with serve_upstreams(
        tmp_path_factory.mktemp("polling"), {"gated": gated[0]}, scopes=ADMIN_SCOPES, tasks={"stream_hold": 0.2}
    ) as live:
        yield live


class Resumptions:
    """Records, from the client's side, the GETs that resume a stream with `Last-Event-ID`."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.happened = anyio.Event()

    async def __call__(self, request: httpx2.Request) -> None:
        if request.method == "GET" and "last-event-id" in request.headers:
            self.sent.append(request.headers["last-event-id"])
            self.happened.set()


async def test_a_real_client_resumes_after_the_gateway_closes_its_stream_mid_call(
    polling: LiveGateway, signals: Signals
) -> None:
    resumptions = Resumptions()
    token = token_for("alice", groups=["operators"])
    async with (
        polling.http(token, event_hooks={"request": [resumptions]}) as http,
        Client(streamable_http_client(polling.base + "/mcp", http_client=http), mode="legacy") as client,
    ):
        answers: list[str] = []

        async def call() -> None:
            answers.append(text_of(await client.call_tool("gated__slow", {"label": "held"})))

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await signals.started["held"].wait()
                await resumptions.happened.wait()  # the gateway closed the POST stream; the client came back
                assert not signals.cancelled["held"].is_set()  # closing the stream did not cancel the call
                signals.release["held"].set()
    assert answers == ["done held"]
    assert len(resumptions.sent) >= 1


async def test_a_resumed_stream_delivers_the_answer_and_only_to_its_own_session(
    polling: LiveGateway, signals: Signals
) -> None:
    """On the wire: the POST stream ends after its priming event, without the answer; another session that
    presents the same event id gets nothing; the owner's GET with Last-Event-ID gets the answer."""
    params = {"name": "gated__slow", "arguments": {"label": "wire"}}
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
    async with (
        polling.http(token_for("alice", groups=["operators"])) as alice_http,
        polling.http(token_for("mallory", groups=["operators"])) as mallory_http,
    ):
        alice, mallory = await open_session(alice_http), await open_session(mallory_http)
        with anyio.fail_after(DEADLINE):
            async with alice_http.stream("POST", "/mcp", json=call, headers=alice.headers) as posted:
                first = await until_result(posted)  # ends when the gateway closes the stream
            assert first and first[0].id is not None and first[0].data == "" and first[0].retry is not None
            assert not any(event.data and "result" in event.message for event in first)
            primed = first[0].id

            stolen_headers = {**mallory.headers, "Accept": "text/event-stream", "Last-Event-ID": primed}
            stolen = await mallory_http.get("/mcp", headers=stolen_headers)
            assert "done wire" not in stolen.text

            signals.release["wire"].set()
            resume_headers = {**alice.headers, "Accept": "text/event-stream", "Last-Event-ID": primed}
            async with alice_http.stream("GET", "/mcp", headers=resume_headers) as resumed:
                events = await until_result(resumed)
    answer = events[-1].message
    assert answer["id"] == 7 and answer["result"]["content"][0]["text"] == "done wire"


async def test_a_2026_caller_is_answered_on_its_request_as_before(polling: LiveGateway, signals: Signals) -> None:
    signals.release["modern"].set()
    async with caller(polling, "alice", declare=False) as alice:
        answered = await alice.result("tools/call", {"name": "gated__slow", "arguments": {"label": "modern"}})
    assert answered["content"][0]["text"] == "done modern"


def test_stream_hold_is_off_by_default_and_bounded() -> None:
    assert TasksSettings().stream_hold is None
    with pytest.raises(ValidationError):
        TasksSettings(stream_hold=-1)
