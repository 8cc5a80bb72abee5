"""A caller of the gateway over plain HTTP, one POST per request, as a 2026-07-28 client sends them.

Each `Caller` is one HTTP client: closing it is the caller disconnecting, and a new `Caller` for
the same principal is the caller coming back.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2

from aggregator.tasks.task import EXTENSION, Task
from tests.harness import LiveGateway, token_for

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
DEADLINE = 10.0
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


class Caller:
    """Sends single JSON-RPC requests; `declare` puts the tasks extension in each request's capabilities."""

    def __init__(self, http: httpx2.AsyncClient, *, declare: bool = True, **capabilities: Any) -> None:
        self.http = http
        self.declare = declare
        self.capabilities = capabilities
        self._ids = itertools.count(1)

    async def request(
        self, method: str, params: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The JSON-RPC answer (with `result` or `error`) to `method`."""
        capabilities: dict[str, Any] = {"extensions": {EXTENSION: {}}} if self.declare else {}
        capabilities.update(self.capabilities)
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": capabilities,
            "io.modelcontextprotocol/clientInfo": {"name": "tasks-test", "version": "1"},
        }
        sent = {**params, "_meta": {**meta, **params.get("_meta", {})}}
        routing = {"mcp-protocol-version": MODERN, "mcp-method": method}
        name = params.get("name", params.get("taskId"))
        if isinstance(name, str):
            routing["mcp-name"] = name
        message = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": sent}
        response = await self.http.post(
            "/mcp", content=json.dumps(message), headers={**ACCEPT, **routing, **(headers or {})}
        )
        return messages(response)[-1]

    async def result(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The `result` of `method`; fails the test on an error."""
        answer = await self.request(method, params)
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    async def error(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The `error` of `method`; fails the test on a result."""
        answer = await self.request(method, params)
        assert "error" in answer, answer
        error: dict[str, Any] = answer["error"]
        return error


def messages(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an answer, JSON or SSE (skipping the SDK's empty priming event)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        lines = response.text.splitlines()
        return [json.loads(line[5:]) for line in lines if line.startswith("data:") and line[5:].strip()]
    answer = response.json()
    return answer if isinstance(answer, list) else [answer]


@asynccontextmanager
async def caller(live: LiveGateway, sub: str, *, declare: bool = True, **capabilities: Any) -> AsyncIterator[Caller]:
    """A 2026-07-28 caller of `live` as `sub` (a member of `operators`: it may call every tool)."""
    async with live.http(token_for(sub, groups=["operators"])) as http:
        yield Caller(http, declare=declare, **capabilities)


@asynccontextmanager
async def legacy_session(live: LiveGateway, sub: str, capabilities: dict[str, Any]) -> AsyncIterator[_LegacyCaller]:
    """A 2025-11-25 session of `live` as `sub`, initialized with `capabilities`: its `request` sends in the session."""
    async with live.http(token_for(sub, groups=["operators"])) as http:
        initialize = {
            "protocolVersion": LEGACY,
            "capabilities": capabilities,
            "clientInfo": {"name": "t", "version": "1"},
        }
        first = await http.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize}, headers=ACCEPT
        )
        session = {"mcp-session-id": first.headers["mcp-session-id"], "mcp-protocol-version": LEGACY}
        await http.post(
            "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers={**ACCEPT, **session}
        )
        legacy = _LegacyCaller(http, session)
        legacy.initialized = messages(first)[-1]["result"]
        yield legacy


class _LegacyCaller(Caller):
    def __init__(self, http: httpx2.AsyncClient, session: dict[str, str]) -> None:
        super().__init__(http, declare=False)
        self.session = session
        self.initialized: dict[str, Any] = {}
        """The initialize result."""

    async def request(
        self, method: str, params: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        message = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        response = await self.http.post("/mcp", content=json.dumps(message), headers={**ACCEPT, **self.session})
        return messages(response)[-1]


def task_of(live: LiveGateway, sub: str, task_id: str) -> Task:
    """The gateway's own record of `sub`'s task (to wait on its events instead of polling)."""
    assert live.gateway.tasks is not None
    issuer = live.gateway.settings.auth.issuer
    return live.gateway.tasks.store.get(task_id, f"{issuer}|{sub}")


async def settled(task: Task) -> None:
    """Wait (with a deadline) until `task` has finished."""
    with anyio.fail_after(DEADLINE):
        while not task.terminal:
            await task.settled.wait()


async def started_call(client: Caller, tool: str, started: Mapping[str, anyio.Event], label: str) -> dict[str, object]:
    """Call `tool` with `label` (it becomes a task) and wait until the upstream says the call has begun."""
    created = await client.result("tools/call", {"name": tool, "arguments": {"label": label}})
    with anyio.fail_after(DEADLINE):
        await started[label].wait()
    return created
