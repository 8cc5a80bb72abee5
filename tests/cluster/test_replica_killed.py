"""The issue's kill test: a real redis-server, real nginx (rendered from the shipped template by the project's
own renderer) in front of three replica processes; 50 sessions of each era call through nginx while one
replica is killed with SIGKILL.

- Every call started after the kill succeeds. nginx moves what hashed to the dead replica along the hash
  ring (its connect fails), and a 2025-11-25 session continues there with the same id: the replica it
  reaches adopts it from its shared record (the client never initializes again).
- Every call in flight on the killed replica fails within a deadline, with the error nginx gives, and
  reached the upstream once (nginx never sends it again): a streamed answer (the caller asked for
  progress) ends without its last chunk, which the client reads as `httpx2.RemoteProtocolError`
  (incomplete chunked read); a plain JSON answer had not begun, and the client gets nginx's 502.
  Calls in flight on the other replicas are answered.
- The surviving replicas count the sessions they adopted on /metrics.

Each replica sends its upstream `X-Replica: <index>`, and the upstream's `hold` tool notes it for each call
(`tests/cluster/holding.py`): that is how the test learns where nginx sent each call, and so which sessions
lived on the replica it kills.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest

from aggregator.cluster.sessions import owner_digest
from aggregator.config.settings import Settings
from aggregator.nginx import NginxControl, NginxPaths, apply
from aggregator.registry.models import load_servers
from tests.cluster.holding import REPLICA_HEADER, holding_upstream
from tests.cluster.replicas import ADMINS, SCOPES, USERS, redis_server
from tests.cluster.sessions import MODERN, SESSION_HEADER, call_echo, echoed, headers, initialize
from tests.conftest import REPOSITORY
from tests.harness import SECRET, free_port, token_for, write_files
from tests.nginx.harness import nginx_settings, requires_nginx, running_nginx
from tests.processes import RunningProcess, run_process, write_gateway_config

pytestmark = [pytest.mark.anyio, requires_nginx]

REPLICAS = 3
KILLED = 0
LEGACY_SESSIONS = 50
MODERN_CALLERS = 50
CALLS_AFTER = 3
DEADLINE = 30.0
"""Seconds any one step may take: a guard against hanging, not a measure of speed."""
STARTUP_DEADLINE = 120.0
"""Three gateway processes starting at once on a shared 2-core machine."""
KEY_ENV = "MCP_AGGREGATOR_TEST_KEY"
REDIS_TIMEOUT = 2.0
"""Seconds one Redis command may take: on a loaded test machine the default 0.25 s can pass, and a replica
then serves from local state (it neither records nor adopts sessions) until its listener reconnects."""
UPSTREAM_CALLS = 3 * (LEGACY_SESSIONS + MODERN_CALLERS)
"""Concurrent calls one replica may make to the upstream: room for every caller's two held calls and its next
call at once (the default, 64, bounds what one replica asks of one real upstream)."""
ADOPTED_METRIC = "mcp_aggregator_cluster_sessions_adopted_total"
ADOPTED_LINE = "cluster.session_adopted"


@dataclass
class Caller:
    """One client: a 2025-11-25 session (`session_id`, once initialized) or a 2026-07-28 caller (`legacy` False)."""

    sub: str
    legacy: bool
    session_id: str | None = None

    @property
    def token(self) -> str:
        return token_for(self.sub, groups=USERS)

    @property
    def key(self) -> str:
        """How the replicas' logs name the session (`adoption._short`: a digest, never the id itself)."""
        assert self.session_id is not None
        return owner_digest({"session": self.session_id})[:12]


@dataclass
class Flight:
    """A caller's `echo__hold` call through nginx: streamed (it asks for progress, so its answer is an SSE stream
    from the first notification on) or plain (a JSON answer, whose headers come with the result)."""

    caller: Caller
    streamed: bool
    replica: int | None = None
    """The replica running it, as the upstream noted."""
    status: int | None = None
    answer: str | None = None
    error: httpx2.TransportError | None = None
    progressed: anyio.Event = field(default_factory=anyio.Event)
    ended: anyio.Event = field(default_factory=anyio.Event)

    @property
    def label(self) -> str:
        return f"{self.caller.sub}/{'streamed' if self.streamed else 'plain'}"


@dataclass
class Replica:
    """One `mcp-aggregator serve` process: its /mcp URL and its output."""

    url: str
    process: RunningProcess

    @property
    def address(self) -> str:
        """`host:port`, as nginx's `gateway_replicas` lists it."""
        return urlsplit(self.url).netloc

    def adoption_lines(self, after: int = 0) -> list[str]:
        """Its `cluster.session_adopted` log lines, from output line `after` on."""
        return [line for line in self.process.lines[after:] if ADOPTED_LINE in line]


@asynccontextmanager
async def replica_processes(directory: Path, redis_url: str, upstream_url: str) -> AsyncIterator[list[Replica]]:
    """`REPLICAS` `mcp-aggregator serve` processes sharing `redis_url`, started at once; yielded once all are
    READY, connected to the upstream and to Redis. Replica i sends the upstream `X-Replica: i`."""
    async with AsyncExitStack() as stack:
        processes = []
        for index in range(REPLICAS):
            folder = directory / f"replica-{index}"
            upstream = {"transport": "streamable-http", "url": upstream_url, "headers": {REPLICA_HEADER: str(index)}}
            servers = write_files(folder, {"echo": upstream}, SCOPES)
            config = write_gateway_config(
                folder,
                key_env=KEY_ENV,
                cluster={"redis_url": redis_url, "retry_interval": 0.1, "timeout": REDIS_TIMEOUT},
                rate_limit_per_second=0,
                limits={"max_calls_per_upstream": UPSTREAM_CALLS},
            )
            argv = ["-m", "aggregator", "serve", "--servers", str(servers), "--port", "0", "--config", str(config)]
            process = await stack.enter_async_context(
                run_process([sys.executable, *argv], REPOSITORY, env={KEY_ENV: SECRET})
            )
            processes.append(process)
        urls: dict[int, str] = {}

        async def ready(index: int, process: RunningProcess) -> None:
            line = await process.wait_for(re.compile(r"^READY (\S+)"), STARTUP_DEADLINE)
            urls[index] = line.split()[1]
            await process.wait_for(re.compile(r"upstream\.connected upstream=echo "), STARTUP_DEADLINE)
            await process.wait_for("cluster.redis_available", STARTUP_DEADLINE)

        async with anyio.create_task_group() as starting:
            for index, process in enumerate(processes):
                starting.start_soon(ready, index, process)
        yield [Replica(urls[index], process) for index, process in enumerate(processes)]


@asynccontextmanager
async def nginx_in_front(
    directory: Path, replicas: list[Replica], redis_url: str, upstream_url: str
) -> AsyncIterator[str]:
    """nginx with the config `mcp-aggregator nginx render` installs for `replicas` sharing `redis_url` (the
    shipped template, from a replica's settings); yields the aggregated endpoint's URL."""
    servers = write_files(directory, {"echo": {"transport": "streamable-http", "url": upstream_url}}, None)
    nginx = nginx_settings(free_port(), gateway_replicas=[replica.address for replica in replicas])
    settings = Settings.model_validate(
        {"data_dir": directory / "data", "nginx": nginx, "cluster": {"redis_url": redis_url}}
    )
    control = NginxControl(settings.nginx.binary, NginxPaths.from_settings(settings))
    registered = load_servers(servers)
    await anyio.to_thread.run_sync(lambda: apply(settings, registered, control, reload=False))
    async with running_nginx(settings) as running:
        yield running.url + "/mcp"


async def fly(http: httpx2.AsyncClient, url: str, flight: Flight) -> None:
    """Make the flight's `echo__hold` call and read its answer to the end: note the HTTP status, the first
    progress notification (`progressed`), the answer or the transport error that ended it (then `ended`)."""
    caller = flight.caller
    meta: dict[str, Any] = {"progressToken": flight.label} if flight.streamed else {}
    params = {"name": "echo__hold", "arguments": {"label": flight.label}, "_meta": meta}
    sent = headers(caller.token, caller.session_id)
    if not caller.legacy:
        meta |= {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        sent |= {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "echo__hold"}
    body = {"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": params}
    try:
        async with http.stream("POST", url, headers=sent, json=body) as response:
            flight.status = response.status_code
            messages: list[dict[str, Any]] = []
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                async for line in response.aiter_lines():
                    if line.startswith("data:") and line[5:].strip():
                        messages.append(json.loads(line[5:]))
                        if messages[-1].get("method") == "notifications/progress":
                            flight.progressed.set()
            elif response.status_code == 200:
                messages.append(json.loads(await response.aread()))
            if (result := next((message for message in messages if message.get("id") == 99), None)) is not None:
                flight.answer = "".join(block["text"] for block in result["result"]["content"])
    except httpx2.TransportError as error:
        flight.error = error
    finally:
        flight.ended.set()


async def adoptions_counted(http: httpx2.AsyncClient, replica: Replica) -> int:
    """The sessions `replica` says it adopted, read from its /metrics as an operator would (not through nginx:
    the template publishes no /metrics)."""
    scrape = await http.get(
        replica.url.removesuffix("/mcp") + "/metrics",
        headers={"authorization": f"Bearer {token_for('olga', groups=ADMINS)}"},
    )
    assert scrape.status_code == 200, scrape.text
    (count,) = [line.split()[1] for line in scrape.text.splitlines() if line.startswith(ADOPTED_METRIC + " ")]
    return int(count)


async def logged_adoptions(replica: Replica, count: int) -> list[str]:
    """The replica's adoption log lines once `count` of them have arrived (its output is read as it comes)."""
    after = 0
    for _ in range(count):
        line = await replica.process.wait_for(ADOPTED_LINE, DEADLINE, after)
        after = replica.process.lines.index(line, after) + 1
    return replica.adoption_lines()


def adoption_key(line: str) -> str:
    """The session an adoption log line names (`key=`: a digest of its id)."""
    found = re.search(r"\bkey=(\w+)", line)
    assert found is not None, line
    return found.group(1)


async def test_calls_after_a_replica_is_killed_all_succeed_and_those_in_flight_fail_cleanly(tmp_path: Path) -> None:
    callers = [Caller(f"legacy-{index}", legacy=True) for index in range(LEGACY_SESSIONS)]
    callers += [Caller(f"modern-{index}", legacy=False) for index in range(MODERN_CALLERS)]
    flights = [Flight(caller, streamed) for caller in callers for streamed in (True, False)]
    async with (
        redis_server(tmp_path / "redis") as redis,
        holding_upstream() as (upstream_url, holding),
        replica_processes(tmp_path, redis.url, upstream_url) as replicas,
        nginx_in_front(tmp_path / "front", replicas, redis.url, upstream_url) as url,
        httpx2.AsyncClient(trust_env=False, timeout=DEADLINE, limits=httpx2.Limits(max_connections=None)) as http,
    ):
        killed = replicas[KILLED]
        survivors = [replica for replica in replicas if replica is not killed]

        async def begin(caller: Caller) -> None:
            if caller.legacy:
                caller.session_id = await initialize(http, url, caller.token, caller.sub)
            assert echoed(await call_echo(http, url, caller.token, caller.session_id, "before")) == "before"

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as beginning:
                for caller in callers:
                    beginning.start_soon(begin, caller)

        async with anyio.create_task_group() as flying:
            for flight in flights:
                flying.start_soon(fly, http, url, flight)
            with anyio.fail_after(DEADLINE):  # every call runs at the upstream; every streamed answer has begun
                await holding.wait_for(len(flights))
                for flight in flights:
                    if flight.streamed:
                        await flight.progressed.wait()
            for flight in flights:
                (flight.replica,) = holding.replicas_of(flight.label)
            doomed = [flight for flight in flights if flight.replica == KILLED]
            moved = [flight.caller for flight in doomed if flight.caller.legacy and flight.streamed]
            assert moved and not all(flight.caller.legacy for flight in doomed), "both eras on the replica to kill"
            adopted_before = {replica.url: await adoptions_counted(http, replica) for replica in replicas}
            for replica in replicas:  # the killed replica's too, before its output ends
                await logged_adoptions(replica, adopted_before[replica.url])
            marks = [replica.process.mark() for replica in survivors]

            killed.process.process.send_signal(signal.SIGKILL)
            await killed.process.process.wait()

            async def after_the_kill(caller: Caller) -> None:
                for index in range(CALLS_AFTER):
                    response = await call_echo(http, url, caller.token, caller.session_id, f"after {index}")
                    assert echoed(response) == f"after {index}", caller
                    if caller.legacy:
                        assert response.headers.get(SESSION_HEADER) == caller.session_id, "the same session"

            with anyio.fail_after(DEADLINE):  # never hang: the calls cut off end within the deadline
                async with anyio.create_task_group() as calls:
                    for caller in callers:
                        calls.start_soon(after_the_kill, caller)
                    for flight in doomed:
                        await flight.ended.wait()
            holding.released.set()
            with anyio.fail_after(DEADLINE):
                for flight in flights:
                    await flight.ended.wait()

        for flight in flights:
            assert holding.replicas_of(flight.label) == [flight.replica], f"nginx sent {flight.label} again"
            seen = (flight.status, flight.error, flight.answer)
            if flight.replica != KILLED:
                assert seen == (200, None, f"released on replica {flight.replica}"), flight.label
            elif flight.streamed:  # the answer nginx was relaying ends without its last chunk
                assert flight.status == 200 and isinstance(flight.error, httpx2.RemoteProtocolError), (
                    flight.label,
                    seen,
                )
                assert "incomplete chunked read" in str(flight.error)
            else:  # no answer had begun: nginx answers 502 itself and sends the call nowhere else
                assert seen == (502, None, None), flight.label

        # Adoptions: a session whose id hashes to another replica than the one that answered its initialize is
        # adopted there, so some were adopted before the kill. After it, each session of the killed replica is
        # adopted by the replica nginx moved it to, unless that one had begun it; no other session is adopted,
        # none twice, and each adoption is counted on the adopter's /metrics.
        adopted_after = [await adoptions_counted(http, replica) for replica in survivors]
        for replica, count in zip(survivors, adopted_after, strict=True):
            assert len(await logged_adoptions(replica, count)) == count, "the counter counts the adoptions logged"
        keys = [
            adoption_key(line)
            for replica, mark in zip(survivors, marks, strict=True)
            for line in replica.adoption_lines(mark)
        ]
        assert sum(adopted_after) - sum(adopted_before[replica.url] for replica in survivors) == len(keys)
        assert len(set(keys)) == len(keys) and set(keys) <= {caller.key for caller in moved}, keys
        adopted_by_the_killed = {adoption_key(line) for line in killed.adoption_lines()}
        begun_on_the_killed = {caller.key for caller in moved} - adopted_by_the_killed
        assert begun_on_the_killed <= set(keys), "these were held by no survivor: each was adopted where it moved"
        # None only if each session of the killed replica had begun where it moved: (2/3 + 1/9)^50, about 4e-6.
        assert keys, "no session of the killed replica was adopted"
        for replica in survivors:
            assert not [line for line in replica.process.lines if "Traceback" in line]
