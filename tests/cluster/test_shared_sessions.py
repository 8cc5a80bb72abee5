"""2025-11-25 sessions shared through Redis: a session opened on one replica continues on another with the
same id, only for its own principal; a DELETE ends it everywhere; a bad record is ignored; without Redis,
today's behaviour (the replica that holds a session serves it, another answers 404)."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import httpx2
import pytest
from redis.asyncio import Redis

from aggregator.cluster.sessions import SessionRecord, owner_digest
from aggregator.server.resources import HEALTH_URI
from aggregator.upstreams.caller import LOG_LEVEL_STATE_KEY
from tests.cluster.replicas import ADMINS, USERS, RedisServer, cluster_of, redis_server, replicas
from tests.cluster.sessions import (
    Router,
    answer,
    call_echo,
    echoed,
    headers,
    initialize,
    routed_client,
    sharing_of,
)
from tests.harness import LiveGateway, text_of, token_for, tool_names

pytestmark = pytest.mark.anyio

DEADLINE = 20.0
BURST = 200
REDIS_TIMEOUT = 2.0
ADOPTED_METRIC = "mcp_aggregator_cluster_sessions_adopted_total"


def sharing_replicas(
    directory: Path, redis_url: str, echo_url: str, count: int, **settings: Any
) -> AbstractAsyncContextManager[list[LiveGateway]]:
    """`replicas` whose Redis commands may take `REDIS_TIMEOUT`: on a loaded test machine the default 0.25 s
    can pass, and a replica then keeps its sessions to itself until its listener reconnects."""
    cluster = {"redis_url": redis_url, "retry_interval": 0.1, "timeout": REDIS_TIMEOUT}
    return replicas(directory, redis_url, echo_url, count, burst=BURST, cluster=cluster, **settings)


class TwoReplicas(NamedTuple):
    """A redis-server, two replicas sharing it, a client of each replica and one of Redis."""

    redis: RedisServer
    first: LiveGateway
    second: LiveGateway
    on_first: httpx2.AsyncClient
    on_second: httpx2.AsyncClient
    look: Redis


@asynccontextmanager
async def two_replicas(directory: Path, echo_url: str) -> AsyncIterator[TwoReplicas]:
    """`sharing_replicas` twice over a fresh redis-server, with the clients the tests talk through."""
    async with (
        redis_server(directory / "redis") as redis,
        sharing_replicas(directory, redis.url, echo_url, 2) as (first, second),
        first.http() as on_first,
        second.http() as on_second,
        redis.client() as look,
    ):
        yield TwoReplicas(redis, first, second, on_first, on_second, look)


async def text_at(client: Redis, key: str) -> str:
    """The string Redis holds at `key` (fails if there is none)."""
    text = await client.get(key)
    assert isinstance(text, str), f"nothing at {key}"
    return text


async def adoptions_counted(live: LiveGateway) -> int:
    """The sessions the replica says it adopted, as an operator reads them on /metrics."""
    async with live.http(token_for("olga", groups=ADMINS)) as http:
        metrics = (await http.get("/metrics")).text
    (count,) = [line.split()[1] for line in metrics.splitlines() if line.startswith(ADOPTED_METRIC + " ")]
    return int(count)


async def test_a_session_opened_on_one_replica_continues_on_another_with_the_same_id(
    echo_url: str, tmp_path: Path
) -> None:
    async with (
        redis_server(tmp_path / "redis") as redis,
        sharing_replicas(tmp_path, redis.url, echo_url, 2) as (
            first,
            second,
        ),
    ):
        router = Router(first.address)
        async with routed_client(router, "paula", USERS) as client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated in 2026-07-28, served to 2025-11-25 sessions
                await client.set_logging_level("error")
            assert text_of(await client.call_tool("echo__echo", {"text": "on the first"})) == "on the first"
            (session_id,) = {sent.session for sent in router.on(first) if sent.session is not None}

            router.target = second.address  # the first replica is gone, as far as this client can tell
            assert "echo__echo" in await tool_names(client)
            assert text_of(await client.call_tool("echo__echo", {"text": "on the second"})) == "on the second"
            assert text_of(await client.call_tool("echo__echo", {"text": "again"})) == "again"  # the lean path

            on_second = router.on(second)
            assert {sent.session for sent in on_second} == {session_id}, "the client kept its session id"
            assert "initialize" not in {sent.method for sent in on_second}, "the client never initialized again"
            connection = sharing_of(second).adopted[session_id]
            assert connection.state[LOG_LEVEL_STATE_KEY] == "error", "the session's log level came along"
            assert connection.client_params is not None and connection.client_params.client_info.name == "mcp"
            assert connection.protocol_version == "2025-11-25"
            assert [await adoptions_counted(live) for live in (first, second)] == [0, 1]

            async with redis.client() as look:
                stored = SessionRecord.model_validate_json(
                    await text_at(look, cluster_of(first).sessions.key(session_id))
                )
            assert stored.log_level == "error"
            assert stored.owner != owner_digest(None) and "paula" not in stored.owner  # a digest of the binding
            assert "eyJ" not in stored.model_dump_json(), "no token in the record"
        # Leaving the client block DELETEs the session (on the second replica): it ends on both.
        assert router.sent[-1].method == "DELETE" and router.sent[-1].replica == second.address
        with anyio.fail_after(DEADLINE):
            await first.log.wait_for("cluster.session_ended")
        async with first.http() as http:
            token = token_for("paula", groups=USERS)
            gone = await call_echo(http, "/mcp", token, session_id, "after the end")
        assert gone.status_code == 404
        async with redis.client() as look:
            assert await look.exists(cluster_of(first).sessions.key(session_id)) == 0


async def test_another_principal_with_the_id_is_answered_as_for_an_unknown_id(echo_url: str, tmp_path: Path) -> None:
    paula, quinn = token_for("paula", groups=USERS), token_for("quinn", groups=USERS)
    async with two_replicas(tmp_path, echo_url) as pair:
        session_id = await initialize(pair.on_first, "/mcp", paula)
        stolen = await call_echo(pair.on_second, "/mcp", quinn, session_id, "not mine")
        unknown = await call_echo(pair.on_second, "/mcp", quinn, "0" * 32, "nobody's")
        assert stolen.status_code == unknown.status_code == 404
        assert stolen.json() == unknown.json(), "the answer says nothing about whether the session exists"
        assert session_id not in sharing_of(pair.second).adopted
        assert "cluster.session_not_adopted" in pair.second.log.output
        assert session_id not in pair.second.log.output and quinn not in pair.second.log.output

        # The refused attempt changed nothing: the session's own principal continues there.
        assert echoed(await call_echo(pair.on_second, "/mcp", paula, session_id, "still mine")) == "still mine"
        assert session_id in sharing_of(pair.second).adopted
        # ... and its holder still refuses the other principal, as it did before.
        assert (await call_echo(pair.on_second, "/mcp", quinn, session_id, "not mine")).status_code == 404


async def test_a_garbage_or_foreign_record_is_ignored_and_the_replica_keeps_serving(
    echo_url: str, tmp_path: Path
) -> None:
    paula = token_for("paula", groups=USERS)
    async with two_replicas(tmp_path, echo_url) as pair:
        session_id = await initialize(pair.on_first, "/mcp", paula)
        shared = cluster_of(pair.first).sessions
        record = SessionRecord.model_validate_json(await text_at(pair.look, shared.key(session_id)))
        forged = {
            "1" * 32: "not json {",
            "2" * 32: record.model_copy(update={"session_id": "3" * 32}).model_dump_json(),  # names another id
            "4" * 32: record.model_dump_json().replace("2025-11-25", "1999-01-01"),
            "5" * 32: '{"session_id": "'
            + "5" * 32
            + '", "owner": "x", "protocol_version": "2025-11-25", "client": {}}',
            "6" * 32: "x" * 100_000,
        }
        for fake, text in forged.items():
            await pair.look.set(shared.key(fake), text)
        mark = pair.second.log.mark()
        for fake in forged:
            assert (await call_echo(pair.on_second, "/mcp", paula, fake, "forged")).status_code == 404
        for odd in ("Z" * 32, "0" * 31, "*", "a" * 4000):  # not an id the gateway mints: never looked up
            assert (await call_echo(pair.on_second, "/mcp", paula, odd, "odd")).status_code in (400, 404)
        ignored = [line for line in pair.second.log.lines[mark:] if "cluster.session_record_ignored" in line]
        assert len(ignored) == len(forged)
        assert not sharing_of(pair.second).adopted
        assert echoed(await call_echo(pair.on_second, "/mcp", paula, session_id, "real")) == "real"


async def test_without_redis_a_session_stays_where_it_was_opened(echo_url: str, tmp_path: Path) -> None:
    paula = token_for("paula", groups=USERS)
    async with two_replicas(tmp_path, echo_url) as pair:
        shared_before = await initialize(pair.on_first, "/mcp", paula)
        mark = pair.first.log.mark()
        await pair.redis.kill()
        opened_without = await initialize(pair.on_first, "/mcp", paula)
        with anyio.fail_after(DEADLINE):
            await cluster_of(pair.first).health.wait(available=False)
        for session_id in (shared_before, opened_without):
            assert echoed(await call_echo(pair.on_first, "/mcp", paula, session_id, "here")) == "here"
            refused = await call_echo(pair.on_second, "/mcp", paula, session_id, "there")
            assert refused.status_code == 404, "without Redis another replica cannot know the session"
        own = await initialize(pair.on_second, "/mcp", paula)  # and each replica serves sessions of its own
        assert echoed(await call_echo(pair.on_second, "/mcp", paula, own, "mine")) == "mine"
        lost = [line for line in pair.first.log.lines[mark:] if "cluster.redis_unavailable" in line]
        assert 1 <= len(lost) <= 2, "the outage is logged once per replica, not once per request"


async def test_a_session_record_lives_only_as_long_as_the_session_may(echo_url: str, tmp_path: Path) -> None:
    paula = token_for("paula", groups=USERS)
    async with (
        redis_server(tmp_path / "redis") as redis,
        sharing_replicas(tmp_path, redis.url, echo_url, 1, limits={"session_idle_timeout": 600}) as (first,),
        first.http() as on_first,
        redis.client() as look,
    ):
        session_id = await initialize(on_first, "/mcp", paula)
        key = cluster_of(first).sessions.key(session_id)
        assert 0 < await look.ttl(key) <= 600
        stored = await text_at(look, key)
        assert session_id not in key and "Bearer" not in stored and paula not in stored
        closed = await on_first.delete(
            "/mcp", headers={"authorization": f"Bearer {paula}", "mcp-session-id": session_id}
        )
        assert closed.status_code == 200
        assert await look.exists(key) == 0


async def test_an_adopted_session_is_subscribed_again_to_what_it_followed(echo_url: str, tmp_path: Path) -> None:
    olga = token_for("olga", groups=ADMINS)  # may read gateway://health, the gateway's own subscribable resource
    async with two_replicas(tmp_path, echo_url) as pair:
        session_id = await initialize(pair.on_first, "/mcp", olga)
        subscribe = {"jsonrpc": "2.0", "id": 5, "method": "resources/subscribe", "params": {"uri": HEALTH_URI}}
        assert "result" in answer(await pair.on_first.post("/mcp", headers=headers(olga, session_id), json=subscribe))
        record = SessionRecord.model_validate_json(
            await text_at(pair.look, cluster_of(pair.first).sessions.key(session_id))
        )
        assert record.subscriptions == (HEALTH_URI,)

        mark = pair.second.log.mark()
        listing = {"jsonrpc": "2.0", "id": 6, "method": "resources/list"}
        assert "result" in answer(await pair.on_second.post("/mcp", headers=headers(olga, session_id), json=listing))
        assert session_id in sharing_of(pair.second).adopted
        # The replica subscribed the session again, as its principal: logged (and audited) like the client's own.
        restored = [line for line in pair.second.log.lines[mark:] if "method=resources/subscribe" in line]
        assert len(restored) == 1 and "outcome=ok" in restored[0], restored
        assert "cluster.subscription_not_restored" not in pair.second.log.output


async def test_a_session_back_on_the_replica_that_opened_it_takes_what_changed_elsewhere(
    echo_url: str, tmp_path: Path
) -> None:
    """The replica that answered `initialize` keeps its copy; when the session comes back to it (the replica its id
    hashes to died), it serves the log level and subscriptions the session set on the other replica meanwhile."""
    olga = token_for("olga", groups=ADMINS)

    async def send(client: httpx2.AsyncClient, session_id: str, method: str, params: dict[str, Any]) -> None:
        message = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
        assert "result" in answer(await client.post("/mcp", headers=headers(olga, session_id), json=message))

    async with two_replicas(tmp_path, echo_url) as pair:
        session_id = await initialize(pair.on_first, "/mcp", olga)
        await send(pair.on_first, session_id, "logging/setLevel", {"level": "error"})
        mark = pair.first.log.mark()
        await send(pair.on_second, session_id, "logging/setLevel", {"level": "debug"})  # adopted there, and changed
        await send(pair.on_second, session_id, "resources/subscribe", {"uri": HEALTH_URI})
        await pair.first.log.wait_for("cluster.session_moved", after=mark)
        copy = sharing_of(pair.first).copies[session_id]
        assert copy.state[LOG_LEVEL_STATE_KEY] == "error"  # what it last saw, until the session comes back

        back = pair.first.log.mark()
        await send(pair.on_first, session_id, "resources/list", {})
        assert copy.state[LOG_LEVEL_STATE_KEY] == "debug"
        lines = pair.first.log.lines[back:]
        assert any("cluster.session_caught_up" in line for line in lines)
        restored = [line for line in lines if "method=resources/subscribe" in line]
        assert len(restored) == 1 and "outcome=ok" in restored[0], restored


async def test_forged_moved_messages_and_another_principal_change_no_copy(echo_url: str, tmp_path: Path) -> None:
    olga, quinn = token_for("olga", groups=ADMINS), token_for("quinn", groups=USERS)
    async with two_replicas(tmp_path, echo_url) as pair:
        kept, moved = await initialize(pair.on_first, "/mcp", olga), await initialize(pair.on_first, "/mcp", olga)
        shared = cluster_of(pair.first).sessions
        kept_digest, moved_digest = (shared.key(held).rsplit(":", 1)[1] for held in (kept, moved))
        for forged in ("", kept_digest, f" {kept_digest}", "x" * 10_000, f"someone {'0' * 64}", f"a b {kept_digest}"):
            await pair.look.publish(shared.moved_channel, forged)
        mark = pair.first.log.mark()
        await pair.look.publish(shared.moved_channel, f"someone {moved_digest}")  # as another replica would
        await pair.first.log.wait_for("cluster.session_moved", after=mark)  # heard in order: the forged ones too
        assert shared.stale == {moved}, "only a well-formed message about a held session counts"

        stolen = await call_echo(pair.on_first, "/mcp", quinn, moved, "not mine")
        assert stolen.status_code == 404
        assert shared.stale == {moved}, "another principal's request does not catch the copy up"
        assert echoed(await call_echo(pair.on_first, "/mcp", olga, moved, "mine")) == "mine"
        assert not shared.stale
