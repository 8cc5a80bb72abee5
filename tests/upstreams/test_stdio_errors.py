"""A stdio upstream that cannot start or that exits says why, wherever an operator looks.

`last_error` (in /readyz, list_services and so the TUI) names the command line and carries the exit
status (or the signal) and the last lines of the child's stderr, bounded, with the values of the
child's `env` masked. Every line the child writes to stderr is logged with its upstream's name, and
the latest few, masked, are shown to operators (list_services `recent_stderr`) while it runs.
The scripts sit in the servers file's folder and are named relative to it.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from aggregator.upstreams.child import LINE_CHARS, RECENT_LINES, TAIL_LINES
from tests.conftest import REPOSITORY
from tests.harness import ADMIN, ERAS, Era, LiveGateway, serve_gateway, text_of, token_for
from tests.policies import ADMIN_SCOPES

pytestmark = pytest.mark.anyio

SECRET = "sk-live-0123456789-do-not-show"
OTHER_SECRET = "hunter2-hunter2"
SCRIPTS = {
    "exits.py": "import sys\nprint('loading config', file=sys.stderr)\n"
    "print('boom: config.toml is missing', file=sys.stderr)\nsys.exit(4)\n",
    "leaks.py": "import os, sys\nprint('token is', os.environ['API_TOKEN'], file=sys.stderr)\n"
    "print('password=' + os.environ['DB_PASSWORD'], file=sys.stderr)\nsys.exit(5)\n",
    "killed.py": "import os, signal, sys\nprint('about to die', file=sys.stderr, flush=True)\n"
    "os.kill(os.getpid(), signal.SIGKILL)\n",
    "chatty.py": "import sys\nfor n in range(100):\n    print(f'line {n}', file=sys.stderr)\n"
    "print('x' * 5000, file=sys.stderr)\nsys.exit(6)\n",
    "silent.py": "import sys\nsys.exit(7)\n",
}
SERVERS: dict[str, dict[str, Any]] = {
    "exits": {"transport": "stdio", "command": "python", "args": ["exits.py"]},
    "leaks": {
        "transport": "stdio",
        "command": "python3",
        "args": ["leaks.py"],
        "env": {"API_TOKEN": SECRET, "DB_PASSWORD": OTHER_SECRET},
    },
    "killed": {"transport": "stdio", "command": "python", "args": ["killed.py"]},
    "chatty": {"transport": "stdio", "command": "python", "args": ["chatty.py"]},
    "silent": {"transport": "stdio", "command": "python", "args": ["silent.py"]},
    "missing": {"transport": "stdio", "command": "mcp-no-such-server", "args": ["--flag"]},
    "missing-path": {"transport": "stdio", "command": "./bin/no-such-server"},
    "no-cwd": {"transport": "stdio", "command": "python", "args": ["-V"], "cwd": "no-such-folder"},
}
# What each upstream's last_error must say, and what it must never say.
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "exits": (
        ["exits.py", "exited with status 4", "loading config | boom: config.toml is missing"],
        ["Connection closed"],
    ),
    "leaks": (["leaks.py", "exited with status 5", "token is ***", "password=***"], [SECRET, OTHER_SECRET]),
    "killed": (["killed.py", "was killed by signal SIGKILL", "about to die"], []),
    "chatty": (["chatty.py", "exited with status 6", "line 99", "xxx..."], ["line 90 "]),
    "silent": (["silent.py", "exited with status 7 (nothing on stderr)"], []),
    "missing": (["cannot start mcp-no-such-server --flag", "'mcp-no-such-server' is not on PATH"], []),
    "missing-path": (["cannot start", "/bin/no-such-server does not exist"], []),
    "no-cwd": (["cannot start", "no-such-folder does not exist"], []),
}


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveGateway]:
    directory = tmp_path_factory.mktemp("stdio-errors")
    for name, text in SCRIPTS.items():
        (directory / name).write_text(text)
    # The test runs from the repository, not from the scripts' folder: relative names resolve there.
    async with serve_gateway(
        directory, servers=SERVERS, scopes=ADMIN_SCOPES, backoff_initial=60, backoff_max=60
    ) as live:
        yield live


def assert_explains(name: str, error: str | None) -> None:
    assert error is not None, name
    assert error.startswith(f"Upstream '{name}': "), error
    said, unsaid = EXPECTED[name]
    for fragment in said:
        assert fragment in error, (fragment, error)
    for fragment in unsaid:
        assert fragment not in error, (fragment, error)
    assert "Traceback" not in error
    assert len(error) < 300 + TAIL_LINES * (LINE_CHARS + 3) + 100  # bounded, however much the child wrote


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_readyz_says_why_a_stdio_upstream_is_down(gateway: LiveGateway, name: str) -> None:
    async with gateway.http(token_for("ops", groups=["admins"])) as http:
        response = await http.get("/readyz")
    assert response.status_code == 200  # none of them is `required`
    upstream = response.json()["upstreams"][name]
    assert upstream["state"] == "unhealthy"
    assert_explains(name, upstream["error"])


@pytest.mark.parametrize("era", ERAS)
async def test_list_services_says_why_each_stdio_upstream_is_down(gateway: LiveGateway, era: Era) -> None:
    async with gateway.client("ops", groups=["admins"], era=era, path=ADMIN) as client:
        result = await client.call_tool("list_services", {})
    assert not result.is_error
    services = {service["name"]: service for service in json.loads(text_of(result))["services"]}
    assert set(services) == set(EXPECTED)
    for name, service in services.items():
        assert_explains(name, service["last_error"])


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("exits", "boom: config.toml is missing"),
        ("leaks", "token is ***"),
        ("killed", "about to die"),
        ("chatty", "line 42"),
    ],
)
async def test_each_stderr_line_is_logged_with_its_upstream(gateway: LiveGateway, name: str, line: str) -> None:
    logged = await gateway.log.wait_for(
        re.compile(rf"upstream\.stderr upstream={name} line={re.escape(json.dumps(line))}")
    )
    assert logged.split(" ", 2)[1] == "info"
    assert SECRET not in gateway.log.output and OTHER_SECRET not in gateway.log.output


async def test_the_gateway_log_never_holds_an_env_value(gateway: LiveGateway) -> None:
    await gateway.log.wait_for(re.compile(r"upstream\.unhealthy upstream=leaks "))
    assert "***" in gateway.log.output
    for secret in (SECRET, OTHER_SECRET):
        assert secret not in gateway.log.output


async def test_an_upstream_that_crashes_mid_session_says_how(tmp_path_factory: pytest.TempPathFactory) -> None:
    faulty = {"transport": "stdio", "command": sys.executable, "args": ["tests/servers/faulty.py", "--stdio"]}
    directory = tmp_path_factory.mktemp("crash")
    async with serve_gateway(directory, servers={"faulty": faulty}, scopes=ADMIN_SCOPES, backoff_initial=60) as live:
        mark = live.log.mark()
        async with live.client("ops", groups=["admins"]) as client:
            with pytest.raises(MCPError, match="Upstream 'faulty' is unavailable"):
                await client.call_tool("faulty__crash", {})
        await live.log.wait_for(re.compile(r"upstream\.unhealthy upstream=faulty "), after=mark)
        error = live.gateway.pool.get("faulty").last_error
    assert error is not None
    assert "tests/servers/faulty.py --stdio exited with status 3" in error
    assert error.endswith("its last stderr lines: STARTED crash")


TALKS = (
    "import os, sys\nsys.path.insert(0, {root!r})\n"
    "for n in range(30):\n    print(f'warming {{n}}', file=sys.stderr)\n"
    "print('ready with key', os.environ['API_TOKEN'], file=sys.stderr, flush=True)\n"
    "from examples.servers.echo import create_server\ncreate_server().run('stdio')\n"
)


@pytest.mark.parametrize("era", ERAS)
async def test_a_running_stdio_upstreams_recent_stderr_is_shown_to_operators_masked(tmp_path: Path, era: Era) -> None:
    (tmp_path / "talks.py").write_text(TALKS.format(root=str(REPOSITORY)))
    servers = {"talks": {"transport": "stdio", "command": "python", "args": ["talks.py"], "env": {"API_TOKEN": SECRET}}}
    async with serve_gateway(tmp_path, servers=servers, scopes=ADMIN_SCOPES) as live:
        await live.log.wait_for(re.compile(r"upstream\.stderr .*ready with key"))
        async with live.client("ops", groups=["admins"], era=era, path=ADMIN) as client:
            listed = json.loads(text_of(await client.call_tool("list_services", {})))["services"]
        async with live.client("user", groups=["users"], era=era, path=ADMIN) as user:
            with pytest.raises(MCPError, match="Unknown tool 'list_services'"):
                await user.call_tool("list_services", {})
    talks = next(service for service in listed if service["name"] == "talks")
    assert talks["state"] == "healthy" and talks["last_error"] is None
    expected = [f"warming {n}" for n in range(30 - RECENT_LINES + 1, 30)] + ["ready with key ***"]
    assert talks["recent_stderr"] == expected
    assert SECRET not in json.dumps(listed)
