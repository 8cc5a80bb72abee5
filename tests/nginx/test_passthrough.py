"""Per-server passthrough through a real nginx, authorised by a real gateway's /auth/validate.

Upstreams: the echo server (streamable HTTP at /mcp, the legacy SSE transport at /sse) and the
headers server (reports what it was sent). nginx's config is rendered by `mcp-aggregator nginx render`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from aggregator.config.settings import Settings
from tests.harness import KID, SECRET, connected, free_port, serve_gateway, serve_mcp, text_of, token_for
from tests.nginx.harness import SCOPES, RunningNginx, nginx_command, nginx_settings, requires_nginx, running_nginx
from tests.processes import write_gateway_config
from tests.servers import headers

pytestmark = [pytest.mark.anyio, requires_nginx]


@dataclass
class Passthrough:
    nginx: RunningNginx
    audit_log: Path

    def url(self, path: str) -> str:
        return self.nginx.url + path


@pytest.fixture(scope="module")
async def passthrough(tmp_path_factory: pytest.TempPathFactory, echo_url: str) -> AsyncIterator[Passthrough]:
    directory = tmp_path_factory.mktemp("passthrough")
    async with serve_mcp(headers.create_server()) as who_url:
        servers = {
            "echo": {"transport": "streamable-http", "url": echo_url},
            "echo-sse": {"transport": "sse", "url": echo_url.removesuffix("/mcp") + "/sse"},
            "who": {
                "transport": "streamable-http",
                "url": who_url,
                "identity_headers": ["X-User", "X-Scopes", "X-Tool-Name"],
            },
            "who-token": {"transport": "streamable-http", "url": who_url, "forward_caller_token": True},
        }
        nginx = nginx_settings(free_port())
        async with serve_gateway(directory, servers=servers, scopes=SCOPES, nginx=nginx) as live:
            await live.wait_until(connected(*servers))
            # `nginx render` reads the same settings from a gateway.yaml, with the gateway's address.
            nginx["gateway_replicas"] = [live.address]
            config = write_gateway_config(directory, key_env="TEST_GATEWAY_KEY", kid=KID, nginx=nginx)
            rendered = await nginx_command("render", config, {"TEST_GATEWAY_KEY": SECRET})
            assert rendered.returncode == 0, rendered.stderr
            assert "passthrough: /echo/, /echo-sse/, /who/, /who-token/" in rendered.stdout
            settings = Settings.model_validate({"data_dir": directory / "data", "nginx": nginx})
            async with running_nginx(settings) as running:
                yield Passthrough(running, live.audit_log)


def token(subject: str, *scopes: str) -> str:
    return token_for(subject, scopes=scopes)


@asynccontextmanager
async def connect(url: str, bearer: str, mode: str = "auto", **headers: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}", **headers}, trust_env=False) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_permitted_caller_reaches_a_streamable_http_upstream(passthrough: Passthrough, mode: str) -> None:
    async with connect(passthrough.url("/echo/mcp"), token("alice", "echo/call"), mode) as client:
        assert text_of(await client.call_tool("echo", {"text": "through nginx"})) == "through nginx"
        assert {tool.name for tool in (await client.list_tools()).tools} >= {"echo", "add"}


async def test_a_permitted_caller_reaches_a_legacy_sse_upstream(passthrough: Passthrough) -> None:
    headers = {"Authorization": f"Bearer {token('alice', 'echo/call')}"}
    async with Client(sse_client(passthrough.url("/echo-sse/sse"), headers=headers), mode="legacy") as client:
        assert text_of(await client.call_tool("echo", {"text": "over sse"})) == "over sse"


async def post(passthrough: Passthrough, path: str, body: Any, bearer: str | None, **headers: str) -> httpx2.Response:
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    headers |= {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    async with httpx2.AsyncClient(trust_env=False) as http:
        return await http.post(passthrough.url(path), json=body, headers=headers)


def call(name: str, request_id: int = 1) -> dict[str, Any]:
    params = {"name": name, "arguments": {"text": "x"} if name == "echo" else {"message": "m"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def test_a_caller_without_a_valid_token_is_challenged(passthrough: Passthrough) -> None:
    missing = await post(passthrough, "/echo/mcp", call("echo"), None)
    assert missing.status_code == 401
    metadata = passthrough.url("/.well-known/oauth-protected-resource/echo/mcp")
    assert missing.headers["WWW-Authenticate"] == f'Bearer resource_metadata="{metadata}"'
    assert missing.json()["error"] == "invalid_request"
    garbage = await post(passthrough, "/echo/mcp", call("echo"), "garbage")
    assert garbage.status_code == 401
    assert 'error="invalid_token"' in garbage.headers["WWW-Authenticate"]
    assert garbage.json()["error_description"] == "token is not a well-formed JWT"
    async with httpx2.AsyncClient(trust_env=False) as http:
        document = (await http.get(metadata)).json()
    assert document["resource"] == passthrough.url("/echo/mcp")


async def test_a_refusal_says_what_was_missing(passthrough: Passthrough) -> None:
    no_server = await post(passthrough, "/echo/mcp", call("echo"), token("wendy", "weather/only"))
    assert no_server.status_code == 403
    assert no_server.json()["error_description"] == "'wendy' has no access to server 'echo'."
    forbidden_tool = await post(passthrough, "/echo/mcp", call("fail"), token("bob", "echo/call"))
    assert forbidden_tool.status_code == 403
    assert forbidden_tool.json() == {
        "error": "insufficient_scope",
        "error_description": "'bob' may not call tool 'fail' of server 'echo'.",
        "scope": "aggregate/all echo/fail",
    }
    assert 'error="insufficient_scope"' in forbidden_tool.headers["WWW-Authenticate"]
    assert 'scope="aggregate/all echo/fail"' in forbidden_tool.headers["WWW-Authenticate"]
    audit = [json.loads(line) for line in passthrough.audit_log.read_text().splitlines()]
    assert {"principal": "bob", "name": "fail", "decision": "deny", "upstream": "echo"}.items() <= audit[-1].items()


async def test_a_batch_with_one_forbidden_tool_is_refused_whole(passthrough: Passthrough) -> None:
    bearer = token("bob", "echo/call")
    refused = await post(passthrough, "/echo/mcp", [call("echo", 1), call("fail", 2)], bearer)
    assert refused.status_code == 403
    assert refused.json()["error_description"] == "Batch element 2: 'bob' may not call tool 'fail' of server 'echo'."
    permitted = await post(passthrough, "/echo/mcp", [call("echo", 1), call("echo", 2)], bearer)
    assert permitted.status_code not in (401, 403)  # reached the upstream, which decides about batches itself


async def test_modern_headers_must_agree_with_the_body(passthrough: Passthrough) -> None:
    bearer = token("mallory", "echo/call")
    lying = await post(
        passthrough, "/echo/mcp", call("fail"), bearer, **{"Mcp-Method": "tools/call", "Mcp-Name": "echo"}
    )
    assert lying.status_code == 403
    assert lying.json()["error_description"] == "The Mcp-Name header says 'echo' but the body names 'fail'."
    other_method = await post(passthrough, "/echo/mcp", call("echo"), bearer, **{"Mcp-Method": "tools/list"})
    assert other_method.status_code == 403
    assert other_method.json()["error_description"] == (
        "The Mcp-Method header says 'tools/list' but the body calls 'tools/call'."
    )


async def test_a_get_stream_is_checked_too(passthrough: Passthrough) -> None:
    async with httpx2.AsyncClient(trust_env=False) as http:
        headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {token('wendy', 'weather/only')}"}
        stream = await http.get(passthrough.url("/echo-sse/sse"), headers=headers)
        assert stream.status_code == 403
        assert stream.json()["error_description"] == "'wendy' has no access to server 'echo-sse'."
        anonymous = await http.get(passthrough.url("/echo/mcp"), headers={"Accept": "text/event-stream"})
        assert anonymous.status_code == 401
        smuggled = await http.request(
            "GET",
            passthrough.url("/echo/mcp"),
            content=json.dumps(call("fail")),
            headers={"Authorization": f"Bearer {token('bob', 'echo/call')}", "Content-Type": "application/json"},
        )
        assert smuggled.status_code == 403  # a body on a GET is judged like a POST's


@asynccontextmanager
async def opened_client(passthrough: Passthrough, transport: str, bearer: str) -> AsyncIterator[Client]:
    if transport == "sse":
        headers = {"Authorization": f"Bearer {bearer}"}
        async with Client(sse_client(passthrough.url("/echo-sse/sse"), headers=headers), mode="legacy") as client:
            yield client
    else:
        mode = "legacy" if transport.endswith("legacy") else "auto"
        async with connect(passthrough.url("/echo/mcp"), bearer, mode) as client:
            yield client


@pytest.mark.parametrize("transport", ["streamable-http legacy", "streamable-http 2026", "sse"])
async def test_progress_streams_through_before_the_result(passthrough: Passthrough, transport: str) -> None:
    """A 20-second call must report progress long before it ends: nginx buffers nothing."""
    bearer = token("alice", "echo/call")
    first_progress = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        first_progress.set()

    async def slow_call(client: Client) -> None:
        await client.call_tool("slow", {"seconds": 20}, progress_callback=on_progress)

    async with opened_client(passthrough, transport, bearer) as client, anyio.create_task_group() as calls:
        calls.start_soon(slow_call, client)
        with anyio.fail_after(10):
            await first_progress.wait()
        calls.cancel_scope.cancel()


async def test_upstreams_get_identity_headers_where_configured_and_never_the_callers_token(
    passthrough: Passthrough,
) -> None:
    bearer = token("carol", "who/call")
    spoofed = {"X-User": "mallory", "X-Scopes": "everything"}
    async with connect(passthrough.url("/who/mcp"), bearer, **spoofed) as client:
        seen = json.loads(text_of(await client.call_tool("whoami", {})))
    assert seen == {"x-user": "carol", "x-scopes": "who/call", "x-tool-name": "whoami"}
    async with connect(passthrough.url("/who-token/mcp"), bearer, **spoofed) as client:
        seen = json.loads(text_of(await client.call_tool("whoami", {})))
    assert seen == {"authorization": f"Bearer {bearer}"}


async def test_the_aggregated_endpoint_and_its_metadata_are_served_through_nginx(passthrough: Passthrough) -> None:
    async with connect(passthrough.url("/mcp"), token("root", "aggregate/all")) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"echo__echo", "who__whoami"} <= names
        assert text_of(await client.call_tool("echo__echo", {"text": "aggregated"})) == "aggregated"
    async with httpx2.AsyncClient(trust_env=False) as http:
        metadata = (await http.get(passthrough.url("/.well-known/oauth-protected-resource/mcp"))).json()
        assert metadata["resource"] == passthrough.url("/mcp")
        assert (await http.post(passthrough.url("/auth/validate"))).status_code == 404
