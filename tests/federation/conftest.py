"""A gateway that follows registries, served in-process as `serve_gateway` does, and a registry a test answers for."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aggregator.upstreams.pool import UpstreamPool
from tests.harness import LiveGateway, gateway_from_files, serve_built

DEADLINE = 30.0


@asynccontextmanager
async def serve_follower(
    directory: Path,
    *,
    registries: Mapping[str, Any],
    scopes: str,
    servers: Mapping[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[LiveGateway]:
    """A secured gateway whose servers.yaml follows `registries`; loopback remotes are allowed (127.0.0.0/8)."""
    servers_file = write_follower_files(directory, registries, scopes, servers or {})
    settings.setdefault("admin_allowed_networks", ["127.0.0.0/8"])
    settings.setdefault("rate_limit_per_second", 0)
    gateway = gateway_from_files(directory, servers_file, scopes_file=directory / "scopes.yml", **settings)
    async with serve_built(gateway, directory) as live:
        yield live


def write_follower_files(
    directory: Path, registries: Mapping[str, Any], scopes: str, servers: Mapping[str, Any]
) -> Path:
    """Write `directory`/servers.yaml (`servers` and `registries`) and scopes.yml; return the servers file."""
    directory.mkdir(parents=True, exist_ok=True)
    servers_file = directory / "servers.yaml"
    servers_file.write_text(yaml.safe_dump({"servers": dict(servers), "registries": dict(registries)}, sort_keys=False))
    (directory / "scopes.yml").write_text(scopes)
    return servers_file


def offers(server: str, *tools: str, absent: tuple[str, ...] = ()) -> Any:
    """A pool condition: `server` is connected and lists every one of `tools` and none of `absent`."""

    def holds(pool: UpstreamPool) -> bool:
        found = next((u for u in pool if u.name == server), None)
        if found is None or found.state.value not in ("healthy", "degraded"):
            return False
        names = {tool.name for tool in found.listing.tools}
        return set(tools) <= names and not names & set(absent)

    return holds


@dataclass
class FakeRegistry:
    """An official-format registry on loopback whose answer each test sets: `status` and `body` (JSON or bytes)."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"servers": [], "metadata": {"count": 0}})
    requests: list[Request] = field(default_factory=list)

    def app(self) -> Starlette:
        async def servers(request: Request) -> Response:
            self.requests.append(request)
            content = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
            return Response(content, status_code=self.status, media_type="application/json")

        return Starlette(routes=[Route("/v0.1/servers", servers)])


def published(name: str, url: str | None = None, *, transport: str = "streamable-http", **extra: Any) -> dict[str, Any]:
    """One `ServerResponse` as the official registry publishes it: a remote at `url`, or packages (`extra`)."""
    server: dict[str, Any] = {"name": name, "description": f"{name} server", "version": "1.0.0"}
    if url is not None:
        server["remotes"] = [{"type": transport, "url": url}]
    server.update(extra)
    return {"server": server, "_meta": {"io.modelcontextprotocol.registry/official": {"status": "active"}}}
