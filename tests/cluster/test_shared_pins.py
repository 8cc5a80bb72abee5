"""Tool-definition approvals and rejections made on one replica are applied by every replica.

In-process gateways with their own data_dir (their own pins.json) share a real redis-server and
the upstream `shop`, which changes its tools while they run: each replica holds the changes; an
operator's verdict on one is served by the others within 2 s, a replica started later gets the
verdicts made before, a verdict made while Redis is down reaches the others when it returns, and
a forged shared record changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import pytest
from mcp import Client

from aggregator.cli.main import main
from aggregator.cluster.records import SharedRecords
from tests.cluster.replicas import RedisServer, cluster_of, joined, redis_server, running
from tests.harness import ADMIN, LiveGateway, call_structured, connected, serve_gateway, serve_mcp, text_of
from tests.trust.shop import SCOPES, Shop
from tests.trust.test_pinning import Listener, assert_unknown

pytestmark = pytest.mark.anyio

REPLICATED = 2.0
"""The issue's bound: a verdict made on one replica is served by the others within 2 s."""
RECOVERY = 20.0
CHANGED = {"shop__price", "shop__stock", "shop__refund"}


@asynccontextmanager
async def replica(directory: Path, redis_url: str, shop_url: str) -> AsyncIterator[LiveGateway]:
    """A gateway of its own folder serving `shop` (changes held) and sharing `redis_url`, once both answer."""
    async with serve_gateway(
        directory,
        servers={"shop": {"transport": "streamable-http", "url": shop_url, "on_change": "hold"}},
        scopes=SCOPES,
        servers_reload_interval=0.1,
        rate_limit_per_second=0,
        cluster={"redis_url": redis_url, "retry_interval": 0.1, "timeout": 2.0},
    ) as live:
        await live.wait_until(connected("shop"))
        await joined([live], RECOVERY)
        yield live


class TwoReplicas(NamedTuple):
    """A redis-server, the shop's address, two replicas sharing both and a caller of the second."""

    redis: RedisServer
    shop_url: str
    first: LiveGateway
    second: LiveGateway
    caller: Client


@asynccontextmanager
async def two_replicas(directory: Path, shop: Shop, listener: Listener) -> AsyncIterator[TwoReplicas]:
    """`replica` twice over a fresh redis-server and `shop` served on loopback, with a legacy-era caller of the
    second whose tool-list notifications `listener` hears."""
    async with (
        redis_server(directory / "redis") as redis,
        serve_mcp(shop.server) as shop_url,
        replica(directory / "a", redis.url, shop_url) as first,
        replica(directory / "b", redis.url, shop_url) as second,
        second.member("callers", era="legacy", message_handler=listener.on_message) as caller,
    ):
        yield TwoReplicas(redis, shop_url, first, second, caller)


def pins_of(live: LiveGateway) -> SharedRecords:
    shared = cluster_of(live).pins
    assert shared is not None
    return shared


async def held(live: LiveGateway) -> dict[str, dict[str, Any]]:
    async with live.member("admins", path=ADMIN) as admin:
        return {entry["tool"]: entry for entry in (await call_structured(admin, "list_held_tools", {}))["held"]}


async def refresh(*gateways: LiveGateway) -> None:
    for live in gateways:
        async with live.member("admins", path=ADMIN) as admin:
            await call_structured(admin, "refresh_service", {"service_name": "shop"})


async def verdict(live: LiveGateway, name: str, tool: str, fingerprint: str | None = None) -> dict[str, Any]:
    arguments = {"service_name": "shop", "tool_name": tool}
    async with live.member("admins", path=ADMIN) as admin:
        return await call_structured(
            admin, name, {**arguments, **({"fingerprint": fingerprint} if fingerprint else {})}
        )


def rejected(live: LiveGateway, server: str, tool: str) -> Callable[[], bool]:
    gate = live.gateway.catalog.gate
    assert gate is not None
    return lambda: server in gate.pins() and tool in gate.pins()[server]["rejected"]


async def names_on(client: Client, listener: Listener, wanted: Callable[[set[str]], bool]) -> set[str]:
    with anyio.fail_after(REPLICATED):
        return await listener.until(client, wanted)


async def test_a_verdict_on_one_replica_is_applied_by_every_replica_and_by_one_started_later(tmp_path: Path) -> None:
    shop = Shop()
    listener = Listener()
    async with two_replicas(tmp_path, shop, listener) as (redis, shop_url, first, second, caller):
        shop.change()
        await refresh(first, second)
        assert set(await held(first)) == set(await held(second)) == {"price", "stock", "refund"}
        await assert_unknown(caller, "shop__price")

        fingerprint = (await held(first))["price"]["fingerprint"]
        await verdict(first, "approve_tool", "price", fingerprint)
        await names_on(caller, listener, lambda names: "shop__price" in names)
        assert text_of(await caller.call_tool("shop__price", {"item": "tea"})) == "tea: 3 EUR"

        await verdict(first, "reject_tool", "refund")
        with anyio.fail_after(REPLICATED):
            await pins_of(second).wait_until(rejected(second, "shop", "refund"))
        assert set(await held(second)) == {"stock"}
        await assert_unknown(caller, "shop__refund", {"shop__refund", "shop__stock"})

        async with replica(tmp_path / "c", redis.url, shop_url) as third, third.member("callers") as late:
            assert set(await held(third)) == {"stock"}  # its first listing approved nothing the others hold
            assert text_of(await late.call_tool("shop__price", {"item": "tea"})) == "tea: 3 EUR"
            await assert_unknown(late, "shop__refund", {"shop__refund", "shop__stock"})
            await assert_unknown(late, "shop__stock", {"shop__refund", "shop__stock"})

            await verdict(third, "approve_tool", "stock")  # and its verdicts reach the earlier replicas
            await names_on(caller, listener, lambda names: "shop__stock" in names)


async def test_an_approval_made_with_the_cli_on_one_replicas_host_reaches_the_others(tmp_path: Path) -> None:
    shop = Shop()
    listener = Listener()
    async with two_replicas(tmp_path, shop, listener) as (_, _, first, second, caller):
        shop.change()
        await refresh(first, second)
        config = tmp_path / "cli.yaml"
        config.write_text(f"data_dir: {first.gateway.settings.data_dir}\n")
        assert await anyio.to_thread.run_sync(main, ["tools", "approve", "shop", "stock", "--config", str(config)]) == 0
        names = await names_on(caller, listener, lambda names: "shop__stock" in names)  # read by a's watcher
        assert not {"shop__price", "shop__refund"} & names


async def test_a_verdict_made_while_redis_is_down_works_locally_and_reaches_the_others_when_it_returns(
    tmp_path: Path,
) -> None:
    shop = Shop()
    listener = Listener()
    async with (
        two_replicas(tmp_path, shop, listener) as (redis, _, first, second, there),
        first.member("callers") as here,
    ):
        shop.change()
        await refresh(first, second)
        await redis.kill()
        await verdict(first, "approve_tool", "price")  # the admin tool answers without Redis
        assert text_of(await here.call_tool("shop__price", {"item": "tea"})) == "tea: 3 EUR"
        await assert_unknown(there, "shop__price")

        async with running(redis):  # the same port, empty: as after a crash
            with anyio.fail_after(RECOVERY):
                await listener.until(there, lambda names: "shop__price" in names)
        assert text_of(await there.call_tool("shop__price", {"item": "tea"})) == "tea: 3 EUR"


async def test_a_forged_shared_record_is_ignored(tmp_path: Path) -> None:
    shop = Shop()
    async with (
        redis_server(tmp_path / "redis") as redis,
        serve_mcp(shop.server) as shop_url,
        replica(tmp_path / "a", redis.url, shop_url) as only,
        only.member("callers") as caller,
    ):
        shop.change()
        await refresh(only)
        shared = pins_of(only)
        field = json.dumps(["shop", "stock"], separators=(",", ":"))
        async with redis.client() as client:
            record = json.loads(str(await client.hget(shared.key, field)))  # type: ignore[misc]
            offered = record["held"]
            forged = {**offered, "definition": {**offered["definition"], "description": "Harmless."}}
            record["pinned"] = {key: forged[key] for key in ("fingerprint", "definition")} | {"by": "x", "at": "y"}
            mark = only.log.mark()
            await client.hset(shared.key, field, json.dumps(record))  # type: ignore[misc]
            await client.publish(shared.channel, field)
            await client.hset(shared.key, '["shop"]', "{}")  # type: ignore[misc]
            await client.publish(shared.channel, '["shop"]')
        await only.log.wait_for("trust.shared_pins_ignored.*does not match its fingerprint", RECOVERY, mark)
        await only.log.wait_for("trust.shared_pins_ignored.*not a \\[server, tool\\] pair", RECOVERY, mark)
        assert "stock" in await held(only)
        await assert_unknown(caller, "shop__stock")
