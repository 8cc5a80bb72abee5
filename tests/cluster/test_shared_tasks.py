"""2026-07-28 tasks served by any replica: read, answered and cancelled through a replica that does not run them.

Two in-process gateways share a real redis-server and the gated upstream (`tests.tasks.upstream`),
whose calls run until the test releases them. A task created on one replica is read on the
other, answered there, cancelled there (the call stops upstream); it stays its owner's own; a
forged task id names nothing; a task whose replica's heartbeat lapsed reads `failed`; with Redis
down the running replica still serves its tasks, and the other reads them again once it returns.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import pytest

from aggregator.cluster.task_records import LAPSED, owner_digest
from aggregator.cluster.tasks import SharedTasks
from tests.cluster.replicas import RedisServer, cluster_of, joined, redis_server, running
from tests.harness import LiveGateway, serve_upstreams
from tests.policies import ADMIN_SCOPES
from tests.tasks.upstream import Signals, serve_gated
from tests.tasks.wire import DEADLINE, Caller, caller, settled, started_call, task_of

pytestmark = pytest.mark.anyio

RECOVERY = 20.0


@asynccontextmanager
async def replica(
    directory: Path, redis_url: str, upstream: str, heartbeat: float = 1.0, **tasks: Any
) -> AsyncIterator[LiveGateway]:
    """A gateway of its own folder in front of `upstream` that answers every declaring call with a task."""
    cluster = {"redis_url": redis_url, "retry_interval": 0.1, "timeout": 2.0, "heartbeat_interval": heartbeat}
    async with serve_upstreams(
        directory, {"gated": upstream}, scopes=ADMIN_SCOPES, tasks={"answer_within": 0, **tasks}, cluster=cluster
    ) as live:
        await joined([live], RECOVERY)
        yield live


class TwoReplicas(NamedTuple):
    """A redis-server, the replica that runs the tasks, a caller of it and a caller of a second replica."""

    redis: RedisServer
    first: LiveGateway
    here: Caller
    there: Caller


@asynccontextmanager
async def two_replicas(
    directory: Path,
    upstream: str,
    *,
    callers: tuple[str, str] = ("alice", "alice"),
    capabilities: Mapping[str, Any] = {},
    **settings: Any,
) -> AsyncIterator[TwoReplicas]:
    """Two `replica`s of `upstream` sharing a fresh redis-server (the first with `settings`) and a caller of each,
    as `callers`, declaring `capabilities`: the first replica runs the tasks, the second only serves them."""
    here_as, there_as = callers
    async with (
        redis_server(directory / "redis") as redis,
        replica(directory / "a", redis.url, upstream, **settings) as first,
        replica(directory / "b", redis.url, upstream) as second,
        caller(first, here_as, **capabilities) as here,
        caller(second, there_as, **capabilities) as there,
    ):
        yield TwoReplicas(redis, first, here, there)


def shared(live: LiveGateway) -> SharedTasks:
    return cluster_of(live).tasks


async def mirrored(live: LiveGateway, task_id: str) -> None:
    """Wait until Redis holds what `live` knows of `task_id` (its latest state, or nothing once dropped)."""
    tasks = shared(live)
    with anyio.fail_after(DEADLINE):
        await tasks.wait_until(lambda: tasks.current(task_id))


async def start(client: Caller, signals: Signals, label: str, runner: LiveGateway) -> str:
    """Start a task on `runner` (the replica `client` calls) and wait until Redis mirrors it; its id."""
    created = await started_call(client, "gated__slow", signals.started, label)
    task_id = str(created["taskId"])
    await mirrored(runner, task_id)
    return task_id


@pytest.fixture
async def gated() -> AsyncIterator[tuple[str, Signals]]:
    async with serve_gated() as served:
        yield served


async def test_a_task_is_read_and_cancelled_through_the_replica_that_does_not_run_it(
    tmp_path: Path, gated: tuple[str, Signals]
) -> None:
    url, signals = gated
    async with two_replicas(tmp_path, url) as (_, first, here, there):
        finishing = await start(here, signals, "finishing", first)
        assert (await there.result("tasks/get", {"taskId": finishing}))["status"] == "working"
        signals.release["finishing"].set()
        await settled(task_of(first, "alice", finishing))
        await mirrored(first, finishing)
        done = await there.result("tasks/get", {"taskId": finishing})
        assert done["status"] == "completed"
        assert done["result"]["content"] == [{"type": "text", "text": "done finishing"}]

        stopped = await start(here, signals, "stopped", first)
        ack = await there.result("tasks/cancel", {"taskId": stopped})
        assert ack["resultType"] == "complete" and "status" not in ack
        with anyio.fail_after(DEADLINE):
            await signals.cancelled["stopped"].wait()  # the running replica cancelled the call upstream
        await settled(task_of(first, "alice", stopped))
        await mirrored(first, stopped)
        assert (await there.result("tasks/get", {"taskId": stopped}))["status"] == "cancelled"


async def test_a_question_is_answered_through_the_other_replica(tmp_path: Path, gated: tuple[str, Signals]) -> None:
    url, _ = gated
    async with two_replicas(tmp_path, url, capabilities={"elicitation": {}}) as (_, first, here, there):
        created = await here.result("tools/call", {"name": "gated__confirm", "arguments": {"label": "deploy"}})
        task_id = str(created["taskId"])
        task = task_of(first, "alice", task_id)
        with anyio.fail_after(DEADLINE):
            while task.status != "input_required":
                await task.settled.wait()
        await mirrored(first, task_id)
        asked = await there.result("tasks/get", {"taskId": task_id})
        (key,) = asked["inputRequests"]
        malformed = await there.error("tasks/update", {"taskId": task_id, "inputResponses": {key: "yes"}})
        assert malformed["code"] == -32602 and key in malformed["message"]
        answer = {key: {"action": "accept", "content": {"ok": True}}}
        await there.result("tasks/update", {"taskId": task_id, "inputResponses": answer})
        await settled(task)
        await mirrored(first, task_id)
        done = await there.result("tasks/get", {"taskId": task_id})
        assert done["result"]["content"][0]["text"] == "deploy: accept True"


async def test_another_principal_and_forged_ids_reach_nothing_through_another_replica(
    tmp_path: Path, gated: tuple[str, Signals]
) -> None:
    url, signals = gated
    async with two_replicas(tmp_path, url, callers=("alice", "bob")) as (redis, first, alice, bob):
        task_id = await start(alice, signals, "private", first)
        unknown = await bob.error("tasks/get", {"taskId": "no-such-task-0000"})
        attempts: dict[str, dict[str, Any]] = {
            "tasks/get": {"taskId": task_id},
            "tasks/cancel": {"taskId": task_id},
            "tasks/update": {"taskId": task_id, "inputResponses": {}},
        }
        async with redis.client() as client:
            (replica_key, *_) = [key async for key in client.scan_iter("mcp-aggregator:replica:*")]
        forged = [
            "*",
            "../" * 20,
            "mcp-aggregator:pins",
            replica_key,
            replica_key.split(":", 1)[1],
            shared(first).replica,
            "x" * 256,
            "a b",
        ]
        for method, params in attempts.items():
            error = await bob.error(method, params)
            assert error["code"] == unknown["code"] == -32602
            assert error["message"] == unknown["message"].replace("no-such-task-0000", task_id)
        for task in forged:
            error = await bob.error("tasks/get", {"taskId": task})
            assert error["code"] == -32602 and "Unknown task" in error["message"], task
        oversized = await bob.error("tasks/cancel", {"taskId": "y" * 257})
        assert oversized["code"] == -32602 and "1 to 256 characters" in oversized["message"]
        mark = first.log.mark()
        async with redis.client() as client:  # a cancel that names the task but not its owner
            command = {"task": task_id, "owner": owner_digest("x|bob"), "command": "cancel", "responses": {}}
            assert await client.publish(shared(first).channel, json.dumps(command)) == 1
        await first.log.wait_for("task.command_ignored", DEADLINE, mark)
        assert (await alice.result("tasks/get", {"taskId": task_id}))["status"] == "working"
        assert not signals.cancelled["private"].is_set()
        signals.release["private"].set()


async def test_a_task_whose_replica_stopped_beating_reads_failed_everywhere(
    tmp_path: Path, gated: tuple[str, Signals]
) -> None:
    url, signals = gated
    # the first replica's next beat: long after the test
    async with two_replicas(tmp_path, url, heartbeat=60.0) as (redis, first, here, there):
        task_id = await start(here, signals, "orphan", first)
        async with redis.client() as admin:
            assert await admin.delete(f"mcp-aggregator:replica:{shared(first).replica}") == 1  # as if it lapsed
        failed = await there.result("tasks/get", {"taskId": task_id})
        assert failed["status"] == "failed" and failed["statusMessage"] == LAPSED
        assert failed["error"]["message"] == LAPSED and "inputRequests" not in failed

        await shared(first).reconcile()  # what its listener does once it reaches Redis again
        await settled(task_of(first, "alice", task_id))  # it learns the others took the task as lost
        with anyio.fail_after(DEADLINE):
            await signals.cancelled["orphan"].wait()
        for tasks_caller in (here, there):
            again = await tasks_caller.result("tasks/get", {"taskId": task_id})
            assert (again["status"], again["statusMessage"]) == ("failed", LAPSED)


async def test_with_redis_down_the_running_replica_serves_its_task_and_the_other_catches_up(
    tmp_path: Path, gated: tuple[str, Signals]
) -> None:
    url, signals = gated
    async with two_replicas(tmp_path, url) as (redis, first, here, there):
        task_id = await start(here, signals, "offline", first)
        await redis.kill()
        signals.release["offline"].set()
        await settled(task_of(first, "alice", task_id))
        assert (await here.result("tasks/get", {"taskId": task_id}))["status"] == "completed"
        unreachable = await there.error("tasks/get", {"taskId": task_id})  # nothing to read it from: try again
        assert unreachable["code"] == -32603 and "try again" in unreachable["message"]
        assert await there.error("tasks/get", {"taskId": "no-such-task-0000"}) == {
            **unreachable,
            "message": unreachable["message"].replace(task_id, "no-such-task-0000"),
        }  # (the same for any id: it tells nothing of other principals' tasks)

        async with running(redis):  # the same port, empty: as after a crash
            with anyio.fail_after(RECOVERY):
                await shared(first).wait_until(lambda: shared(first).current(task_id))
            done = await there.result("tasks/get", {"taskId": task_id})
        assert done["status"] == "completed"


async def test_a_task_that_expired_on_its_replica_is_unknown_on_every_replica(
    tmp_path: Path, gated: tuple[str, Signals]
) -> None:
    url, signals = gated
    async with two_replicas(tmp_path, url, ttl=1.0) as (redis, first, here, there):
        task_id = await start(here, signals, "expiring", first)
        await settled(task_of(first, "alice", task_id))  # its time ran out (tasks.ttl): the call was cancelled
        assert (await here.error("tasks/get", {"taskId": task_id}))["code"] == -32602  # and the store dropped it
        await mirrored(first, task_id)  # here: its record deleted
        assert (await there.error("tasks/get", {"taskId": task_id}))["code"] == -32602
        async with redis.client() as client:
            assert not await client.exists(f"mcp-aggregator:task:{task_id}")
