"""A task whose replica process is killed (SIGKILL) ends `failed` on the other replicas once its heartbeat lapses.

One `mcp-aggregator serve` process runs the task (a call of the gated upstream that never ends on its
own); an in-process replica shares the same redis-server. The test waits on Redis's own keyspace
events (the task's record written, the dead replica's heartbeat expired) instead of sleeping.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest
from redis.asyncio.client import PubSub

from aggregator.cluster.task_records import LAPSED
from tests.cluster.replicas import RedisServer, redis_server
from tests.cluster.test_shared_tasks import replica
from tests.conftest import REPOSITORY
from tests.harness import SECRET, token_for, write_files
from tests.policies import ADMIN_SCOPES
from tests.processes import run_process, write_gateway_config
from tests.tasks.upstream import serve_gated
from tests.tasks.wire import DEADLINE, Caller, caller

pytestmark = pytest.mark.anyio

KEY_ENV = "MCP_AGGREGATOR_TEST_KEY"
STARTUP_DEADLINE = 120.0
HEARTBEAT = 0.2


@asynccontextmanager
async def redis_server_with_events(directory: Path) -> AsyncIterator[RedisServer]:
    """A fresh redis-server that publishes keyspace events for string commands and expiries."""
    async with redis_server(directory) as server, server.client() as client:
        await client.config_set("notify-keyspace-events", "K$x")
        yield server


@asynccontextmanager
async def caller_at(url: str, sub: str) -> AsyncIterator[Caller]:
    """A 2026-07-28 caller of the gateway at `url` (another process) as `sub`, a member of `operators`."""
    parts = urlsplit(url)
    headers = {"Authorization": f"Bearer {token_for(sub, groups=['operators'])}"}
    base = f"{parts.scheme}://{parts.netloc}"
    async with httpx2.AsyncClient(base_url=base, headers=headers, trust_env=False) as http:
        yield Caller(http)


async def next_event(pubsub: PubSub, pattern: str) -> str:
    """The key of the next keyspace event whose key and event match `pattern` (`<key> <event>`)."""
    with anyio.fail_after(DEADLINE):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=DEADLINE)
            if message is None:
                continue
            key = str(message["channel"]).split(":", 1)[1]
            if re.fullmatch(pattern, f"{key} {message['data']}"):
                return key


async def test_the_tasks_of_a_killed_replica_read_failed_once_its_heartbeat_lapses(tmp_path: Path) -> None:
    async with serve_gated() as (url, signals), redis_server_with_events(tmp_path / "redis") as redis:
        folder = tmp_path / "killed"
        servers = write_files(folder, {"gated": {"transport": "streamable-http", "url": url}}, ADMIN_SCOPES)
        cluster = {"redis_url": redis.url, "retry_interval": 0.1, "timeout": 2.0, "heartbeat_interval": HEARTBEAT}
        config = write_gateway_config(
            folder, key_env=KEY_ENV, cluster=cluster, rate_limit_per_second=0, tasks={"answer_within": 0}
        )
        argv = ["-m", "aggregator", "serve", "--servers", str(servers), "--port", "0", "--config", str(config)]
        async with (
            run_process([sys.executable, *argv], REPOSITORY, env={KEY_ENV: SECRET}) as process,
            replica(tmp_path / "alive", redis.url, url) as alive,
            redis.client() as client,
            client.pubsub() as pubsub,
        ):
            line = await process.wait_for(re.compile(r"^READY (\S+)"), STARTUP_DEADLINE)
            await process.wait_for("cluster.redis_available", STARTUP_DEADLINE)
            await pubsub.psubscribe("__keyspace@0__:mcp-aggregator:*")
            async with caller_at(line.split()[1], "alice") as doomed:
                created = await doomed.result("tools/call", {"name": "gated__slow", "arguments": {"label": "lost"}})
            task_id = str(created["taskId"])
            with anyio.fail_after(DEADLINE):
                await signals.started["lost"].wait()
            await next_event(pubsub, rf"mcp-aggregator:task:{re.escape(task_id)} set")
            async with caller(alive, "alice") as there:
                assert (await there.result("tasks/get", {"taskId": task_id}))["status"] == "working"
                process.process.send_signal(signal.SIGKILL)
                await process.process.wait()
                await next_event(pubsub, r"mcp-aggregator:replica:[0-9a-f]{16} expired")
                failed = await there.result("tasks/get", {"taskId": task_id})
                cancelled = await there.result("tasks/cancel", {"taskId": task_id})
                again = await there.result("tasks/get", {"taskId": task_id})
            assert (failed["status"], failed["statusMessage"]) == ("failed", LAPSED)
            assert failed["error"] == {"code": -32603, "message": LAPSED}
            assert cancelled["resultType"] == "complete" and again["status"] == "failed"
