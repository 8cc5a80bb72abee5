"""Replicas sharing one Redis act as one gateway: one rate budget per principal, revocations everywhere.

A real redis-server (this module's own) and in-process gateways with their own folders, so
nothing is shared but Redis. Budgets are bursts refilled so slowly that a test's calls never
earn another one: counts are exact, and nothing depends on how long a test takes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import jwt
import pytest

from aggregator.nginx.cache import REVOCATIONS, CacheMarks
from aggregator.policy.revocation import RevocationList
from tests.cluster.replicas import (
    ADMINS,
    SCOPES,
    USERS,
    RedisServer,
    calls_served,
    cluster_of,
    redis_server,
    replicas,
    served,
)
from tests.harness import AUTH, ERAS, Era, serve_gateway, token_for

pytestmark = pytest.mark.anyio

BURST = 9
DEADLINE = 10.0


@pytest.fixture(scope="module")
async def redis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RedisServer]:
    async with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


async def test_a_principal_gets_one_budget_across_three_replicas(
    redis: RedisServer, echo_url: str, tmp_path: Path
) -> None:
    async with replicas(tmp_path, redis.url, echo_url, 3, burst=BURST) as gateways, AsyncExitStack() as stack:
        carol = [await stack.enter_async_context(live.client("carol", groups=USERS)) for live in gateways]
        dave = [await stack.enter_async_context(live.client("dave", groups=USERS)) for live in gateways]
        # Three replicas with budgets of their own would serve all 27 calls (9 each).
        assert await calls_served(carol, 3 * BURST) == BURST
        assert await calls_served(dave, 3 * BURST) == BURST  # another principal's budget is its own
        assert not any(cluster_of(live).health.fallbacks for live in gateways)


@pytest.mark.parametrize("era", ERAS)
async def test_the_lean_path_and_the_sdk_path_take_from_the_same_budget(
    redis: RedisServer, echo_url: str, tmp_path: Path, era: Era
) -> None:
    own = [{"lean_path": True}, {"lean_path": False}]
    async with replicas(tmp_path, redis.url, echo_url, 2, burst=BURST, own=own) as gateways, AsyncExitStack() as stack:
        name = f"hana-{era}"
        clients = [await stack.enter_async_context(live.client(name, groups=USERS, era=era)) for live in gateways]
        assert await calls_served(clients, 2 * BURST) == BURST
        assert await calls_served(clients[1:], 2) == 0  # the SDK path's replica saw the lean path's calls


async def test_principal_names_cannot_reach_each_others_buckets(
    redis: RedisServer, echo_url: str, tmp_path: Path
) -> None:
    # (Control characters never get this far: the token verifier refuses such a subject.)
    names = ["*", "victim*", "victim FLUSHALL", '{"victim"}', "victim|", "mcp-aggregator:rate:victim", "v" * 6000]
    async with replicas(tmp_path, redis.url, echo_url, 2, burst=BURST) as gateways, AsyncExitStack() as stack:
        for name in names:
            clients = [await stack.enter_async_context(live.client(name, groups=USERS)) for live in gateways]
            assert await calls_served(clients, BURST + 2) == BURST, name
        victim = [await stack.enter_async_context(live.client("victim", groups=USERS)) for live in gateways]
        assert await calls_served(victim, BURST + 2) == BURST
        async with redis.client() as client:
            keys = [key async for key in client.scan_iter("*")]
            assert await client.dbsize() == len(keys)
    prefix = "mcp-aggregator:"
    shared = r"(rate:[0-9a-f]{64}|pins|replica:[0-9a-f]{16})"  # (pins: echo's tool definitions, not the callers')
    shapes = [key for key in keys if not re.fullmatch(re.escape(prefix) + shared, key)]
    assert shapes == [], "keys that are not a prefix and a digest"
    assert len([key for key in keys if ":rate:" in key]) >= len(names) + 1 + 1  # each principal its own bucket


async def test_a_token_revoked_on_one_replica_is_refused_by_the_other(
    redis: RedisServer, echo_url: str, tmp_path: Path
) -> None:
    async with replicas(tmp_path, redis.url, echo_url, 2, burst=100) as (first, second):
        token = token_for("erin", groups=USERS)
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        async with second.client(token=token) as client:
            assert await served(client)
        data = second.gateway.settings.data_dir
        marks = CacheMarks(AUTH, second.gateway.guard.policy, data / REVOCATIONS)  # nginx's decision cache
        generation = marks.snapshot()[1]

        # What `mcp-aggregator token revoke <jti>` does on the first replica's host:
        RevocationList(first.gateway.settings.data_dir / REVOCATIONS).revoke(jti)
        with anyio.fail_after(DEADLINE):
            await cluster_of(second).revocations.wait_revoked(jti)

        for live in (first, second):
            async with live.http(token) as http:
                answer = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert answer.status_code == 401, live.url
            assert "revoked" in answer.headers["www-authenticate"]
        assert marks.snapshot()[1] != generation, "nginx would keep serving allows made before the revocation"
        async with redis.client() as client:
            assert await client.sismember("mcp-aggregator:revoked", jti)  # type: ignore[misc]


async def test_garbage_in_the_shared_revocations_is_ignored(redis: RedisServer, echo_url: str, tmp_path: Path) -> None:
    junk = ["x" * 100_000, "two\nlines", "tab\there", ""]
    async with replicas(tmp_path, redis.url, echo_url, 1, burst=100) as (only,):
        async with redis.client() as client:
            for value in junk:
                await client.publish("mcp-aggregator:revocations", value)
            await client.publish("mcp-aggregator:revocations", "a-real-token-id")
        with anyio.fail_after(DEADLINE):
            await cluster_of(only).revocations.wait_revoked("a-real-token-id")
        revoked = RevocationList(only.gateway.settings.data_dir / REVOCATIONS).snapshot()
        assert "a-real-token-id" in revoked
        assert not revoked & set(junk)
        assert cluster_of(only).health.available
        async with only.client("frank", groups=USERS) as client:
            assert await served(client)


async def test_a_broken_local_revocation_file_does_not_stop_the_replica(
    redis: RedisServer, echo_url: str, tmp_path: Path
) -> None:
    async with replicas(tmp_path, redis.url, echo_url, 1, burst=100) as (only,):
        (only.gateway.settings.data_dir / REVOCATIONS).write_text("{not json")
        mark = only.log.mark()
        async with redis.client() as client:
            await client.publish("mcp-aggregator:revocations", "while-the-file-is-broken")
        await only.log.wait_for("cluster.revocations_not_written", DEADLINE, mark)
        async with only.client("ivan", groups=USERS) as client:
            assert await served(client)
        assert cluster_of(only).health.available


async def test_without_redis_url_a_gateway_keeps_its_state_to_itself(echo_url: str, tmp_path: Path) -> None:
    servers = {"echo": {"transport": "streamable-http", "url": echo_url}}
    async with serve_gateway(tmp_path, servers=servers, scopes=SCOPES, metrics_public=True) as live:
        assert live.gateway.cluster is None
        async with live.http() as http:
            metrics = (await http.get("/metrics")).text
        async with live.http(token_for("gina", groups=ADMINS)) as http:
            details = (await http.get("/readyz")).json()
    assert "cluster" not in metrics
    assert "cluster" not in details and "upstreams" in details
