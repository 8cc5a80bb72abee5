"""/readyz: ready once the gateway can serve, not while any one upstream is down.

Ready = the policy is loaded, the gateway listens, every upstream's first connection attempt has
settled (bounded by `connect_timeout`), and the upstreams marked `required: true` in servers.yaml are
connected. Any other upstream that is down is reported in the operator's body, never fatal: with
replicas behind a load balancer, one bad upstream must not take every replica out. The body keeps
its fields and adds `required` per upstream.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import httpx2
import pytest

from aggregator.http.app import create_app
from aggregator.upstreams.state import UpstreamState
from tests.harness import (
    STARTUP_DEADLINE,
    build_test_gateway,
    free_port,
    serve_asgi,
    serve_gateway,
    token_for,
)
from tests.http.conftest import SCOPES

pytestmark = pytest.mark.anyio

UP = "up"
DOWN = "down"
BODY_KEYS = {"ready", "upstreams", "policy_error", "registry_error"}
UPSTREAM_KEYS = {"state", "era", "tools", "error", "required"}


def up(echo_url: str, **extra: Any) -> dict[str, Any]:
    return {"transport": "streamable-http", "url": echo_url, **extra}


def down(**extra: Any) -> dict[str, Any]:
    return {"transport": "streamable-http", "url": f"http://127.0.0.1:{free_port()}/mcp", "timeout": 1, **extra}


# name -> (servers built from the echo URL, the status /readyz answers)
CASES: dict[str, tuple[Any, int]] = {
    "every upstream connected": (lambda url: {UP: up(url), DOWN: up(url, prefix="other")}, 200),
    "an optional upstream down": (lambda url: {UP: up(url), DOWN: down()}, 200),
    "every upstream down, none required": (lambda url: {UP: down(), DOWN: down()}, 200),
    "a required upstream connected, an optional one down": (
        lambda url: {UP: up(url, required=True), DOWN: down()},
        200,
    ),
    "a required upstream down": (lambda url: {UP: up(url), DOWN: down(required=True)}, 503),
    "a required upstream disabled": (lambda url: {UP: up(url), DOWN: down(required=True, enabled=False)}, 200),
    "a registered entry claiming required": (
        lambda url: {UP: up(url), DOWN: down(required=True, registered_by="mallory")},
        200,
    ),
    "no upstream at all": (lambda url: {}, 200),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_readyz_is_ready_unless_a_required_upstream_is_down(
    tmp_path_factory: pytest.TempPathFactory, echo_url: str, case: str
) -> None:
    servers, status = CASES[case]
    servers = servers(echo_url)
    directory = tmp_path_factory.mktemp("readyz")
    operator_token = token_for("ops", groups=["admins"])
    async with (
        serve_gateway(directory, servers=servers, scopes=SCOPES) as live,
        live.http() as anonymous,
        live.http(operator_token) as operator,
    ):
        public = await anonymous.get("/readyz")
        detailed = await operator.get("/readyz")
    assert (public.status_code, detailed.status_code) == (status, status)
    assert public.json() == {"ready": status == 200}  # anyone learns the readiness only
    body = detailed.json()
    assert set(body) == BODY_KEYS and body["ready"] is (status == 200)
    assert set(body["upstreams"]) == set(servers)
    for name, spec in servers.items():
        upstream = body["upstreams"][name]
        assert set(upstream) == UPSTREAM_KEYS
        assert upstream["required"] is spec.get("required", False)
        if spec.get("enabled", True) is False:
            assert upstream["state"] == "disabled"
        elif "timeout" in spec:  # the unreachable ones are reported, with why
            assert upstream["state"] == "unhealthy"
            assert "ConnectError" in upstream["error"]
        else:
            assert (upstream["state"], upstream["error"]) == ("healthy", None)


async def test_readyz_waits_for_every_first_connection_attempt(tmp_path_factory: pytest.TempPathFactory) -> None:
    """While an upstream's first attempt is pending (a child that never answers), /readyz is 503, /healthz
    200 and READY (`on_ready`) has not come; once `connect_timeout` bounds the attempt, both say ready."""
    directory = tmp_path_factory.mktemp("settling")
    hung = {"transport": "stdio", "command": sys.executable, "args": ["-c", "import sys; sys.stdin.read()"]}
    gateway = build_test_gateway(
        directory, servers={"hung": hung}, scopes=SCOPES, connect_timeout=5, backoff_initial=60
    )
    announced = anyio.Event()
    async with (
        serve_asgi(create_app(gateway, on_ready=announced.set)) as url,
        httpx2.AsyncClient(base_url=url.removesuffix("/mcp"), trust_env=False) as http,
    ):
        assert gateway.pool.get("hung").state is UpstreamState.CONNECTING  # the child never answers
        pending = await http.get("/readyz")
        assert gateway.pool.get("hung").state is UpstreamState.CONNECTING  # still: the answer was about now
        assert not announced.is_set()
        assert (await http.get("/healthz")).status_code == 200  # alive all along
        with anyio.fail_after(STARTUP_DEADLINE):
            await announced.wait()
        settled = await http.get("/readyz")
    assert pending.status_code == 503
    assert settled.status_code == 200
    assert gateway.pool.get("hung").last_error == "no answer within 5 s while connecting"
