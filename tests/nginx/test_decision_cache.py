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
from tests.harness import (
    ERAS,
    SECRET,
    Era,
    LiveGateway,
    connected,
    free_port,
    serve_gateway,
    serve_mcp,
    text_of,
    token_for,
)
from tests.nginx.harness import SCOPES, RunningNginx, nginx_settings, requires_nginx, running_nginx
from tests.servers import headers as headers_server

pytestmark = [pytest.mark.anyio, requires_nginx]

TTL = 600
"""Seconds nginx may keep an allow here: longer than any test, so nothing expires on its own."""
POLICY_INTERVAL = 0.1
DEBOUNCE = 0.3
FLUSH_BOUND = POLICY_INTERVAL + DEBOUNCE + 10.0
"""The documented bound (watch interval + reload_debounce + the reload), with room for a loaded machine."""
JUDGED = re.compile(r"passthrough\.(allowed|denied)|auth\.rejected")
"""A gateway log line for one passthrough request it judged."""
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
        """How many passthrough requests the gateway has judged (a cache hit is none of them)."""
        return sum(
            1 for line in self.live.log.lines if re.search(r"passthrough\.(allowed|denied)|auth\.rejected", line)
        )

    async def post(self, body: bytes | Any, bearer: str | None, **headers: str) -> httpx2.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json", **headers}
        if bearer is not None:
            sent.setdefault("Authorization", f"Bearer {bearer}")
        async with httpx2.AsyncClient(trust_env=False) as http:
            return await http.post(self.url(), content=content, headers=sent)

    async def kept(self, body: dict[str, Any], bearer: str) -> bool:
        """Send an echo call twice (the second with another id), both answered; whether nginx kept the first allow."""
        text = body["params"]["arguments"]["text"]
        assert echoed(await self.post(body, bearer, **modern_headers("echo"))) == text
        decided = self.decisions()
        assert echoed(await self.post(body | {"id": 99}, bearer, **modern_headers("echo"))) == text
        return self.decisions() == decided

    async def warmed(self, era: Era) -> str:
        """A new token of alice's whose echo call of `era` got through twice (so nginx may keep it); the token."""
        bearer = token_for("alice", scopes=["echo/call"])
        for request_id in (1, 2):
            body, headers = era_request(era, request_id)
            assert got_through(await self.post(body, bearer, **headers))
        return bearer

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


@asynccontextmanager
async def staged(directory: Path, echo_url: str) -> AsyncIterator[Stage]:
    """A gateway in `directory` (echo and who behind it), the caching nginx in front of it, and its renderer."""
    async with serve_mcp(headers_server.create_server()) as who_url:
        servers = {
            "echo": {"transport": "streamable-http", "url": echo_url},
            "who": {"transport": "streamable-http", "url": who_url, "identity_headers": ["X-User", "X-Tool-Name"]},
        }
        nginx = nginx_settings(free_port(), auth_cache_ttl=TTL, reload_debounce=DEBOUNCE)
        async with serve_gateway(
            directory, servers=servers, scopes=SCOPES, scopes_reload_interval=POLICY_INTERVAL, nginx=nginx
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


@pytest.fixture(scope="module")
async def stage(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[Stage]:
    """The module's stage, for tests that leave scopes.yml as they found it (each measures its own decisions, with
    tokens and bodies of its own or a key it warms itself; a revocation names a token of the test's own)."""
    async with staged(tmp_path_factory.mktemp("decision-cache"), echo_url) as shared:
        yield shared


@pytest.fixture
async def own_stage(tmp_path: Path, echo_url: str) -> AsyncIterator[Stage]:
    """A stage of the test's own, for tests that change scopes.yml."""
    async with staged(tmp_path, echo_url) as fresh:
        yield fresh


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


def reissued(bearer: str, **claims: Any) -> str:
    """`bearer` with some claims changed, signed again with the test key (a token the gateway judges on its merits)."""
    header = jwt.get_unverified_header(bearer)
    payload = jwt.decode(bearer, options={"verify_signature": False}) | claims
    return jwt.encode(payload, SECRET, algorithm="HS256", headers={"kid": header["kid"]})


ALICE = token_for("alice", scopes=["echo/call"])
OTHER_CALLERS = {
    # name: (Authorization header, expected status)
    "the same caller's other token": (f"Bearer {token_for('alice', scopes=['echo/call'])}", 200),
    "the same token, scheme in lower case": (f"bearer {ALICE}", 200),
    "a token without the tool": (f"Bearer {token_for('bob', scopes=['echo/fail'])}", 403),
    "a token for another server": (f"Bearer {token_for('wendy', scopes=['weather/only'])}", 403),
    "the same claims, expired": (f"Bearer {reissued(ALICE, exp=1_000_000_000)}", 401),
    "alice's claims and one more, signed again": (f"Bearer {reissued(ALICE, nonce='x')}", 200),
    "the token with a byte more": (f"Bearer {ALICE}x", 401),
    "the token as a Basic credential": (f"Basic {ALICE}", 401),
    "no token": ("", 401),
}


@pytest.mark.parametrize("other", OTHER_CALLERS)
async def test_two_tokens_never_share_an_entry(stage: Stage, other: str) -> None:
    assert await stage.kept(call("echo"), ALICE)  # alice's entry is in the cache
    decided = stage.decisions()
    authorization, status = OTHER_CALLERS[other]
    response = await stage.post(call("echo", 3), None, Authorization=authorization, **modern_headers("echo"))
    assert response.status_code == status, response.text
    assert stage.decisions() == decided + 1  # the gateway judged it: alice's entry was not used


REFUSALS = {
    # name: (bearer, body, headers, status)
    "a forbidden tool": (ALICE, call("fail"), modern_headers("fail"), 403),
    "a server without access": (token_for("wendy", scopes=["weather/only"]), call("echo"), modern_headers("echo"), 403),
    "headers that contradict the body": (ALICE, call("fail"), modern_headers("echo"), 403),
    "a batch with one forbidden call": (ALICE, [call("echo", 1), call("fail", 2)], {}, 403),
    "a legacy body with a forbidden tool": (ALICE, call("fail", modern=False), {}, 403),
    "a body that is not JSON": (ALICE, b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call"', {}, 403),
    "an unknown token": (reissued(ALICE, sub="alice", iss="someone-else"), call("echo"), modern_headers("echo"), 401),
}


async def refused_twice(stage: Stage, refusal: str) -> None:
    """The request of `refusal` is refused twice, and judged by the gateway both times."""
    bearer, body, headers, status = REFUSALS[refusal]
    decided = stage.decisions()
    for _ in range(2):
        response = await stage.post(body, bearer, **headers)
        assert response.status_code == status, response.text
    assert stage.decisions() == decided + 2  # both judged by the gateway: the first refusal was not kept


@pytest.mark.parametrize("refusal", [name for name in REFUSALS if name != "a forbidden tool"])
async def test_a_refusal_is_never_cached(stage: Stage, refusal: str) -> None:
    await refused_twice(stage, refusal)


async def test_a_forbidden_tool_is_refused_every_time_and_a_grant_takes_effect_at_once(own_stage: Stage) -> None:
    await refused_twice(own_stage, "a forbidden tool")
    mark = len(own_stage.live.log.lines)
    own_stage.live.scopes_file.write_text(SCOPES.replace("tools: [echo, add, slow]", "tools: [echo, add, slow, fail]"))
    await own_stage.live.log.wait_for("policy.reloaded", after=mark)
    granted = await own_stage.post(call("fail"), ALICE, **modern_headers("fail"))
    assert granted.status_code == 200  # at once: nginx had no refusal to serve


DISHONEST_BODIES: dict[str, bytes] = {
    "another tool": json.dumps(call("fail", 7)).encode(),
    "a batch adding a forbidden call": json.dumps([call("echo", 7), call("fail", 8)]).encode(),
    "the name given twice, the last one forbidden": json.dumps(call("echo", 7))
    .replace('"name": "echo",', '"name": "echo", "name": "fail",')
    .encode(),
    "the id as a string and another tool": json.dumps(call("fail", 7) | {"id": "1"}).encode(),
    "another tool, the honest id": json.dumps(call("fail", 1)).encode(),
}


@pytest.mark.parametrize("body", DISHONEST_BODIES)
async def test_a_body_dependent_decision_is_never_served_from_a_shape_only_key(stage: Stage, body: str) -> None:
    """An honest request is cached; the same headers with a body the gateway refuses are still refused."""
    assert await stage.kept(call("echo"), ALICE)  # only the id differs: a hit
    decided = stage.decisions()
    refused = await stage.post(DISHONEST_BODIES[body], ALICE, **modern_headers("echo"))
    assert refused.status_code == 403, refused.text
    assert stage.decisions() == decided + 1


def era_request(era: Era, request_id: int) -> tuple[dict[str, Any], dict[str, str]]:
    """An echo call as a client of `era` sends it (legacy: no envelope, no Mcp-* headers)."""
    if era == "legacy":
        return call("echo", request_id, modern=False), {"MCP-Protocol-Version": "2025-11-25"}
    return call("echo", request_id), modern_headers("echo")


def got_through(response: httpx2.Response) -> bool:
    """Whether nginx let the request through to the upstream (which may still refuse a legacy sessionless call)."""
    return response.status_code not in (401, 403)


@pytest.mark.parametrize("era", ERAS)
async def test_a_revoked_token_is_refused_once_nginx_has_reloaded(stage: Stage, era: Era) -> None:
    bearer = await stage.warmed(era)
    decided = stage.decisions()
    mark = len(stage.nginx.process.lines)
    await stage.revoke(bearer)
    await stage.wait_flushed(mark)
    body, headers = era_request(era, 3)
    refused = await stage.post(body, bearer, **headers)
    assert refused.status_code == 401
    assert "has been revoked" in refused.json()["error_description"]
    assert stage.decisions() == decided + 1


@pytest.mark.parametrize("era", ERAS)
async def test_a_reloaded_scopes_file_that_removes_access_takes_effect(own_stage: Stage, era: Era) -> None:
    bearer = await own_stage.warmed(era)
    mark = len(own_stage.nginx.process.lines)
    own_stage.live.scopes_file.write_text(SCOPES.replace("tools: [echo, add, slow]", "tools: [add, slow]"))
    await own_stage.wait_flushed(mark)
    body, headers = era_request(era, 3)
    refused = await own_stage.post(body, bearer, **headers)
    assert refused.status_code == 403
    assert refused.json()["error_description"] == "'alice' may not call tool 'echo' of server 'echo'."


@pytest.mark.parametrize(("lifetime", "kept"), [(1, False), (2, False), (60, True), (TTL * 2, True)])
async def test_an_allow_is_never_kept_past_its_tokens_expiry(stage: Stage, lifetime: int, kept: bool) -> None:
    """nginx keeps an allow until two seconds before the token's exp at most: a token about to expire is never kept."""
    assert await stage.kept(call("echo"), token_for("alice", scopes=["echo/call"], ttl=lifetime)) is kept


@pytest.mark.parametrize(("length", "kept"), [(10, True), (3000, True), (5000, False), (200_000, False)])
async def test_only_small_bodies_are_kept(stage: Stage, length: int, kept: bool) -> None:
    """A body of 4000 bytes or more is decided by the gateway every time, and nginx does not complain of it."""
    body = call("echo", 1) | {"params": call("echo")["params"] | {"arguments": {"text": "y" * length}}}
    assert await stage.kept(body, ALICE) is kept
    assert not [line for line in stage.nginx.process.lines if "cache key" in line or "buffer_size" in line]
