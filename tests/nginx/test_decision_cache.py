"""nginx's cache of /auth/validate allows, against a real nginx and a real gateway: what it reuses, and what never.

Every stage renders nginx with a decision cache far longer than any test (`TTL`), so a refusal
seen here comes from a flush or from a key that differs, never from an entry that expired. The
renderer that a managed gateway runs (`NginxRenderer`) watches scopes.yml and the revocation list
and reloads nginx when they change. Whether nginx answered from its cache is read from the
gateway's log: a decision the gateway made is one `passthrough.allowed`/`passthrough.denied` line.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aggregator.config.settings import Settings
from aggregator.nginx import NginxControl, NginxPaths, NginxRenderer, apply
from aggregator.policy.revocation import RevocationList
from aggregator.registry.models import ServersFile, load_servers
from tests.harness import ERAS, Era, LiveGateway, connected, free_port, serve_gateway, serve_mcp, text_of, token_for
from tests.nginx.harness import RunningNginx, nginx_settings, requires_nginx, running_nginx
from tests.servers import headers as headers_server

pytestmark = [pytest.mark.anyio, requires_nginx]

TTL = 600
"""Seconds nginx may keep an allow here: longer than any test, so nothing expires on its own."""
POLICY_INTERVAL = 0.1
DEBOUNCE = 0.3
FLUSH_BOUND = POLICY_INTERVAL + DEBOUNCE + 10.0
"""The documented bound (watch interval + reload_debounce + the reload), with room for a loaded machine."""
SCOPES = """
echo/call:
- server: echo
  methods: [tools/list, tools/call]
  tools: [echo, add]
echo/fail:
- server: echo
  methods: [tools/call]
  tools: [fail]
who/call:
- server: who
  methods: [tools/list, tools/call]
  tools: [whoami]
weather/only:
- server: weather
  methods: [tools/call]
  tools: ["*"]
"""
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


@dataclass
class Stage:
    """A gateway, a caching nginx in front of it, and the renderer that keeps nginx's generation current."""

    live: LiveGateway
    nginx: RunningNginx
    settings: Settings

    def url(self, path: str = "/echo/mcp") -> str:
        return self.nginx.url + path

    def decisions(self) -> int:
        """How many passthrough decisions the gateway has made (a cache hit makes none)."""
        return sum(1 for line in self.live.log.lines if re.search(r"passthrough\.(allowed|denied)", line))

    async def post(self, body: bytes | Any, bearer: str | None, **headers: str) -> httpx2.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json", **headers}
        if bearer is not None:
            sent.setdefault("Authorization", f"Bearer {bearer}")
        async with httpx2.AsyncClient(trust_env=False) as http:
            return await http.post(self.url(), content=content, headers=sent)

    async def revoke(self, bearer: str) -> None:
        jti = jwt.decode(bearer, options={"verify_signature": False})["jti"]
        revocations = RevocationList(self.settings.data_dir / "revoked.json")
        await anyio.to_thread.run_sync(revocations.revoke, jti)

    async def wait_flushed(self, mark: int) -> float:
        """Wait (within FLUSH_BOUND) until nginx has reloaded after output line `mark`; the seconds it took."""
        started = anyio.current_time()
        with anyio.fail_after(FLUSH_BOUND):
            await self.nginx.wait_reloaded(mark)
        return anyio.current_time() - started


@pytest.fixture
async def stage(tmp_path: Path, echo_url: str) -> AsyncIterator[Stage]:
    async with serve_mcp(headers_server.create_server()) as who_url:
        servers = {
            "echo": {"transport": "streamable-http", "url": echo_url},
            "who": {"transport": "streamable-http", "url": who_url, "identity_headers": ["X-User", "X-Tool-Name"]},
        }
        nginx = nginx_settings(free_port(), auth_cache_ttl=TTL, reload_debounce=DEBOUNCE)
        async with serve_gateway(
            tmp_path, servers=servers, scopes=SCOPES, scopes_reload_interval=POLICY_INTERVAL, nginx=nginx
        ) as live:
            await live.wait_until(connected(*servers))
            own = live.gateway.settings
            settings = own.model_copy(
                update={"nginx": own.nginx.model_copy(update={"gateway_replicas": (live.address,)})}
            )

            def servers_file() -> ServersFile:
                return load_servers(live.servers_file)

            control = NginxControl(settings.nginx.binary, NginxPaths.from_settings(settings))
            await anyio.to_thread.run_sync(lambda: apply(settings, servers_file(), control, reload=False))
            async with running_nginx(settings) as running, NginxRenderer(settings, servers_file, control):
                yield Stage(live, running, settings)
            assert running.problems() == []


@asynccontextmanager
async def connect(url: str, bearer: str, era: Era) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, trust_env=False) as http,
        Client(streamable_http_client(url, http_client=http), mode=era) as client,
    ):
        yield client


def call(tool: str, request_id: int = 1, *, modern: bool = True) -> dict[str, Any]:
    """A tools/call; `modern` carries the 2026-07-28 envelope, so the echo upstream answers it without a session."""
    params: dict[str, Any] = {"name": tool, "arguments": {"text": "x"} if tool == "echo" else {"message": "m"}}
    if modern:
        params["_meta"] = ENVELOPE
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def modern_headers(tool: str, method: str = "tools/call") -> dict[str, str]:
    return {"MCP-Protocol-Version": MODERN, "Mcp-Method": method, "Mcp-Name": tool}


def echoed(response: httpx2.Response) -> str:
    """The text the echo tool answered, from a 2026-07-28 JSON response."""
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["content"][0]["text"])


@pytest.mark.parametrize("era", ERAS)
async def test_a_repeated_call_is_decided_once_and_new_arguments_are_decided_again(stage: Stage, era: Era) -> None:
    async with connect(stage.url(), token_for("alice", scopes=["echo/call"]), era) as client:
        assert text_of(await client.call_tool("echo", {"text": "warm"})) == "warm"
        before = stage.decisions()
        for _ in range(3):
            assert text_of(await client.call_tool("echo", {"text": "again"})) == "again"
        assert stage.decisions() - before == 1  # the first "again"; the other two came from nginx's cache
        assert text_of(await client.call_tool("echo", {"text": "new"})) == "new"
        assert stage.decisions() - before == 2  # other arguments, another body: the gateway decides


async def test_an_allow_from_the_cache_still_names_the_caller_to_the_upstream(stage: Stage) -> None:
    async with connect(stage.url("/who/mcp"), token_for("carol", scopes=["who/call"]), "legacy") as client:
        first = json.loads(text_of(await client.call_tool("whoami", {})))
        before = stage.decisions()
        again = json.loads(text_of(await client.call_tool("whoami", {})))
        assert stage.decisions() == before
    assert first == again == {"x-user": "carol", "x-tool-name": "whoami"}
