"""Redis lost mid-run: every call is still served, limits fall back to each replica's own, and the replicas
become one gateway again when Redis returns (a fresh, empty Redis on the same port, as after a crash)."""

from __future__ import annotations

import signal
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
from mcp import Client

from aggregator.nginx.cache import REVOCATIONS
from aggregator.policy.revocation import RevocationList
from tests.cluster.replicas import ADMINS, USERS, RedisServer, calls_served, cluster_of, joined, replicas, running
from tests.harness import LiveGateway, token_for
from tests.processes import free_port

pytestmark = pytest.mark.anyio

BURST = 5
DEADLINE = 30.0
PASSWORD = "redis-password-never-logged"
REDIS_TIMEOUT = 2.0
"""Seconds one Redis command may take. With the default 0.25 s, a loaded test machine (the replicas, the
clients and the event loop they share all waiting for a core) sometimes let a command that Redis answered at
once pass its deadline: that replica then decided alone (a shared budget served 6 calls of 5) and showed
Redis as unavailable until its listener reconnected. A hung Redis costs the first call on each replica this
long instead, which nothing here measures."""


def sharing(redis: RedisServer) -> dict[str, Any]:
    """The replicas' cluster settings: `redis`, reconnecting every 0.1 s, `REDIS_TIMEOUT` per command."""
    return {"redis_url": redis.url, "retry_interval": 0.1, "timeout": REDIS_TIMEOUT}


async def cluster_view(live: LiveGateway) -> tuple[str, str]:
    """What an operator sees: the cluster's state on /readyz, and the Redis gauge on /metrics."""
    async with live.http(token_for("olga", groups=ADMINS)) as http:
        ready = await http.get("/readyz")
        metrics = (await http.get("/metrics")).text
    assert ready.status_code == 200, "a replica without Redis still serves, so it stays ready"
    assert PASSWORD not in ready.text
    gauge = next(line for line in metrics.splitlines() if line.startswith("mcp_aggregator_cluster_redis_up "))
    return ready.json()["cluster"]["state"], gauge.split()[1]


async def test_calls_are_served_while_redis_is_away_and_limits_are_shared_again_after(
    echo_url: str, tmp_path: Path
) -> None:
    redis = RedisServer(free_port(), tmp_path / "redis", password=PASSWORD)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running(redis))
        gateways = await stack.enter_async_context(
            replicas(tmp_path, redis.url, echo_url, 2, burst=BURST, cluster=sharing(redis))
        )
        first, second = gateways

        async def clients(name: str) -> list[Client]:
            return [await stack.enter_async_context(live.client(name, groups=USERS)) for live in gateways]

        paula = await clients("paula")
        assert await calls_served(paula, 2 * BURST) == BURST  # shared: one budget
        assert [await cluster_view(live) for live in gateways] == [("connected", "1")] * 2
        mark = first.log.mark()

        await redis.kill()
        quinn = await clients("quinn")
        assert await calls_served(quinn, 2 * BURST) == 2 * BURST, "calls failed while Redis was away"
        # Each replica now keeps a budget of its own: paula's spent shared budget no longer binds her.
        assert await calls_served(paula, 2 * BURST + 2) == 2 * BURST
        assert [await cluster_view(live) for live in gateways] == [("unavailable", "0")] * 2
        token = token_for("ruth", groups=USERS)
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        RevocationList(first.gateway.settings.data_dir / REVOCATIONS).revoke(jti)  # made during the outage

        await stack.enter_async_context(running(redis))  # the same port, empty: nothing was saved
        await joined(gateways, DEADLINE)
        with anyio.fail_after(DEADLINE):
            await cluster_of(second).revocations.wait_revoked(jti)  # converged
        assert [await cluster_view(live) for live in gateways] == [("connected", "1")] * 2
        sam = await clients("sam")
        assert await calls_served(sam, 2 * BURST) == BURST  # one budget again
        async with second.http(token) as http:
            refused = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401

        lost = [line for line in first.log.lines[mark:] if "cluster.redis_unavailable" in line]
        assert 1 <= len(lost) <= len(gateways), "the outage is logged once per replica, not once per call"
        assert not [line for line in first.log.lines if PASSWORD in line]


async def test_a_replica_started_before_redis_serves_and_joins_when_it_comes(echo_url: str, tmp_path: Path) -> None:
    redis = RedisServer(free_port(), tmp_path / "redis", password=PASSWORD)  # nothing listens there yet
    async with AsyncExitStack() as stack:
        gateways = await stack.enter_async_context(
            replicas(tmp_path, redis.url, echo_url, 2, burst=BURST, wait_for_redis=False, cluster=sharing(redis))
        )
        with anyio.fail_after(DEADLINE):
            for live in gateways:
                await cluster_of(live).health.wait(available=False)
        assert [await cluster_view(live) for live in gateways] == [("unavailable", "0")] * 2
        tina = [await stack.enter_async_context(live.client("tina", groups=USERS)) for live in gateways]
        assert await calls_served(tina, 2 * BURST) == 2 * BURST  # each replica's own budget

        await stack.enter_async_context(running(redis))
        await joined(gateways, DEADLINE)
        uma = [await stack.enter_async_context(live.client("uma", groups=USERS)) for live in gateways]
        assert await calls_served(uma, 2 * BURST) == BURST
        assert not [line for line in gateways[0].log.lines if PASSWORD in line]


async def test_a_hung_redis_costs_calls_nothing_but_its_timeout(echo_url: str, tmp_path: Path) -> None:
    redis = RedisServer(free_port(), tmp_path / "redis", password=PASSWORD)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running(redis))
        gateways = await stack.enter_async_context(
            replicas(tmp_path, redis.url, echo_url, 2, burst=BURST, cluster=sharing(redis))
        )
        assert redis.process is not None
        redis.process.process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
        try:
            victor = [await stack.enter_async_context(live.client("victor", groups=USERS)) for live in gateways]
            assert await calls_served(victor, 2 * BURST) == 2 * BURST, "calls failed while Redis hung"
            with anyio.fail_after(DEADLINE):
                for live in gateways:
                    await cluster_of(live).health.wait(available=False)
        finally:
            redis.process.process.send_signal(signal.SIGCONT)
        await joined(gateways, DEADLINE)
        walt = [await stack.enter_async_context(live.client("walt", groups=USERS)) for live in gateways]
        assert await calls_served(walt, 2 * BURST) == BURST
