"""Class 5: a caller starts only the stdio servers the operator defined, with values that stay data.

register_service takes a template name and a value per slot, never a command line. Each value
must fully match its slot's pattern, is placed whole into one argument (no splitting, no shell,
no expansion), and control characters, over-long values and option-looking values are refused
whatever the pattern says. The argv a started server really received is read back from it.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError

from aggregator.registry.models import StdioUpstream, load_servers
from aggregator.upstreams.state import UpstreamState
from tests.harness import ADMIN, ERAS, Era, LiveGateway, serve_gateway
from tests.policies import admins_policy

pytestmark = pytest.mark.anyio

REPOSITORY = Path(__file__).resolve().parents[2]
DEADLINE = 30.0
SCOPES = admins_policy(permissions=("list_service", "register_service", "modify_service"))
TEMPLATES: dict[str, Any] = {
    "notes": {"command": sys.executable, "args": ["-m", "examples.servers.notes"], "cwd": str(REPOSITORY)},
    "argv": {
        "command": sys.executable,
        "args": ["-m", "tests.security.argv_server", "--label", "{label}", "--title={title}"],
        "slots": {
            "label": {"pattern": "[a-z0-9][a-z0-9-]{0,31}", "description": "a short name"},
            "title": {"pattern": "(?s).+", "description": "anything (a lax operator)"},
        },
        "cwd": str(REPOSITORY),
    },
    "whole": {
        "command": sys.executable,
        "args": ["-m", "tests.security.argv_server", "{path}"],
        "slots": {"path": {"pattern": "(?s).+"}},
        "cwd": str(REPOSITORY),
    },
}


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveGateway]:
    async with serve_gateway(
        tmp_path_factory.mktemp("stdio"), servers={}, scopes=SCOPES, stdio_templates=TEMPLATES
    ) as gateway:
        yield gateway


async def register(client: Client, arguments: dict[str, Any]) -> tuple[bool, str]:
    """(failed, text): a refusal may come as a tool error or as a JSON-RPC error."""
    try:
        result = await client.call_tool("register_service", arguments)
    except MCPError as error:
        return True, error.message
    return bool(result.is_error), "".join(b.text for b in result.content if isinstance(b, types.TextContent))


def argv_values(label: str = "ok", title: str = "ok") -> dict[str, Any]:
    return {
        "service_name": "argv",
        "transport": "stdio",
        "template": "argv",
        "values": {"label": label, "title": title},
    }


INJECTIONS = [
    "-c",
    "-cimport os; os.system('id')",
    "--",
    "--help",
    "-",
    "; id",
    "a;b",
    "a\nb",
    "a b",
    "a\tb",
    "$(id)",
    "`id`",
    "${HOME}",
    "$HOME",
    "../etc",
    "a/../../b",
    "/etc/passwd",
    "a\x00b",
    "x" * 5000,
    "\uff41\uff42\uff43",  # full-width letters
    "caf\u00e9",
    "a\u202eb",  # right-to-left override
    "|cat",
    "a&&b",
    "a>b",
    "*",
    "~root",
    "a'b",
    'a"b',
    "",
    "A",
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("payload", INJECTIONS, ids=[repr(p[:20]) for p in INJECTIONS])
async def test_a_value_outside_its_slot_pattern_is_refused_naming_the_slot(
    live: LiveGateway, payload: str, era: Era
) -> None:
    before = live.servers_file.read_text()
    async with live.client("root", groups=["admins"], era=era, path=ADMIN) as admin:
        failed, message = await register(admin, argv_values(label=payload))
    assert failed and "'label'" in message, message
    assert live.servers_file.read_text() == before


HARD_RULES = [
    ("whole", "path", "-c", "may not start with '-'"),
    ("whole", "path", "--", "may not start with '-'"),
    ("whole", "path", "-cimport os", "may not start with '-'"),
    ("whole", "path", "a\x00b", "control"),
    ("whole", "path", "a\nb", "control"),
    ("whole", "path", "a\rb", "control"),
    ("whole", "path", "a\u2028b", "control"),
    ("whole", "path", "a\u200bb", "control"),
    ("whole", "path", "x" * 1025, "at most 1024"),
    ("argv", "title", "a\x1bb", "control"),
    ("argv", "title", "y" * 100_000, "at most 1024"),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    ("template", "slot", "payload", "reason"), HARD_RULES, ids=[repr(r[2][:12]) for r in HARD_RULES]
)
async def test_values_are_refused_by_the_gateways_own_rules_whatever_the_pattern(
    live: LiveGateway, template: str, slot: str, payload: str, reason: str, era: Era
) -> None:
    values = {"path": payload} if template == "whole" else {"label": "ok", "title": payload}
    arguments = {"service_name": "lax", "transport": "stdio", "template": template, "values": values}
    async with live.client("root", groups=["admins"], era=era, path=ADMIN) as admin:
        failed, message = await register(admin, arguments)
    assert failed and reason in message and f"'{slot}'" in message, message


SHAPES = [
    ({"transport": "stdio"}, "needs a template; offered: argv, notes, whole"),
    ({"transport": "stdio", "template": "bash"}, "There is no stdio template 'bash'"),
    ({"transport": "stdio", "command": "python", "args": ["-c", "print(1)"]}, "command and args not accepted"),
    ({"transport": "stdio", "command": "/bin/sh"}, "command not accepted"),
    ({"transport": "stdio", "template": "notes", "args": ["-c", "x"]}, "args not accepted"),
    ({"transport": "stdio", "template": "argv", "values": {"label": "a"}}, "needs a value for slot 'title'"),
    (
        {"transport": "stdio", "template": "argv", "values": {"label": "a", "title": "b", "shell": "sh"}},
        "has no slot 'shell'",
    ),
    ({"transport": "stdio", "template": "notes", "values": {"x": "y"}}, "has no slot 'x'"),
    ({"transport": "stdio", "template": "argv", "values": {"label": 1, "title": "b"}}, "values.label"),
    ({"transport": "stdio", "template": "notes", "env": {"PYTHONSTARTUP": "/tmp/x"}}, "env"),
    ({"transport": "stdio", "template": "notes", "cwd": "/tmp"}, "cwd"),
    ({"url": "https://example.com/mcp", "template": "notes"}, "template and values are for stdio servers only"),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("arguments", "expected"), SHAPES, ids=[expected for _, expected in SHAPES])
async def test_a_caller_never_gives_a_command_line(
    live: LiveGateway, arguments: dict[str, Any], expected: str, era: Era
) -> None:
    async with live.client("root", groups=["admins"], era=era, path=ADMIN) as admin:
        failed, message = await register(admin, {"service_name": "shaped", **arguments})
    assert failed and expected in message, message


async def connected(live: LiveGateway, name: str) -> None:
    with anyio.fail_after(DEADLINE):
        await live.gateway.pool.wait_until(lambda pool: pool.get(name).state is not UpstreamState.CONNECTING)
    upstream = live.gateway.pool.get(name)
    assert upstream.state in (UpstreamState.HEALTHY, UpstreamState.DEGRADED), upstream.last_error


@pytest.mark.parametrize("era", ERAS)
async def test_a_template_registers_and_runs_a_real_stdio_server(live: LiveGateway, era: Era) -> None:
    name = f"notes-{era}"
    async with live.client("root", groups=["admins"], era=era, path=ADMIN) as admin:
        failed, message = await register(admin, {"service_name": name, "transport": "stdio", "template": "notes"})
        assert not failed, message
        await connected(live, name)
        added = await admin.call_tool(f"{name}__add_note", {"title": "from a template", "body": "it runs"})
        assert not added.is_error and "from a template" in str(added.structured_content)
        assert not (await admin.call_tool("remove_service", {"service_name": name})).is_error
    assert name not in load_servers(live.servers_file).servers


TITLES = [
    "a b; rm -rf / $(id) ${HOME} `whoami` | & * ~ > <",
    "-c import os",
    "--",
    "café ✓ 日本語",
    "{label}",
    "'quoted' \"twice\"",
    "x" * 1024,
]


# The child's argv does not depend on the caller's era: each value is registered once, the eras alternating.
@pytest.mark.parametrize(
    ("title", "era"),
    [(title, ERAS[index % len(ERAS)]) for index, title in enumerate(TITLES)],
    ids=[repr(title[:16]) for title in TITLES],
)
async def test_each_value_arrives_as_one_whole_unexpanded_argument(live: LiveGateway, title: str, era: Era) -> None:
    name = f"argv-{era}"
    async with live.client("root", groups=["admins"], era=era, path=ADMIN) as admin:
        failed, message = await register(admin, {**argv_values(label="alpha-1", title=title), "service_name": name})
        assert not failed, message
        await connected(live, name)
        answer = await admin.call_tool(f"{name}__arguments", {})
        assert not (await admin.call_tool("remove_service", {"service_name": name})).is_error
    assert answer.structured_content == {"result": ["--label", "alpha-1", f"--title={title}"]}


async def test_the_file_records_the_templates_command_line_and_who_registered_it(live: LiveGateway) -> None:
    async with live.client("ops-1", groups=["admins"], path=ADMIN) as admin:
        failed, message = await register(admin, {**argv_values(label="b", title="c"), "service_name": "recorded"})
        assert not failed, message
        spec = load_servers(live.servers_file).servers["recorded"]
        assert not (await admin.call_tool("remove_service", {"service_name": "recorded"})).is_error
    assert isinstance(spec, StdioUpstream)
    assert (spec.command, spec.args) == (
        sys.executable,
        ("-m", "tests.security.argv_server", "--label", "b", "--title=c"),
    )
    assert spec.registered_by == "ops-1"
