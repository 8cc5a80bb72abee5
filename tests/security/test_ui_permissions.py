"""Class 2: every admin tool checks its UI permission on the object it touches, and no caller widens itself.

The matrix: each admin tool (and `gateway://health`) x a principal with one UI-Scopes grant
(`operator-one`: all five permissions for weather; `modify-one`: modify_service for weather;
`list-one`: list_service for weather; `admin`: everything for `all`; `none`: no grant) x the
target (`own`: weather; `other`: echo; `all`: every server / the whole policy), in both eras,
through a real secured gateway in front of real weather and echo upstreams. Every principal may
call every gateway tool by scopes.yml, so the UI permission alone decides.

Then the edits of scopes.yml: existing names, UI-Scopes role names, and every way a caller could
widen its own access (its own groups, its token's scopes, an IdP group it is in) are refused, and
the file is left as it was.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
import yaml
from mcp import Client, MCPError

from aggregator.registry.models import load_servers
from tests.harness import ADMIN, ERAS, Era, LiveGateway, serve_upstreams

pytestmark = pytest.mark.anyio

PRINCIPALS = ("admin", "operator-one", "modify-one", "list-one", "none")
"""The order of the letters in `Cell.expected`."""
HEALTH = "gateway://health"
SCOPES = """
group_mappings:
  admin: [ui-admin, gateway-tools]
  operator-one: [ui-operator-one, gateway-tools]
  modify-one: [ui-modify-one, gateway-tools]
  list-one: [ui-list-one, gateway-tools]
  none: [gateway-tools]
  root: [ui-admin, gateway-tools, everything]
  forecasters: [forecast]
  staff: [staff]
  idp-only: [weather-users]
  pair: [staff, weather-users]
UI-Scopes:
  ui-admin:
    list_service: [all]
    register_service: [all]
    toggle_service: [all]
    modify_service: [all]
    health_check_service: [all]
  ui-operator-one:
    list_service: [weather]
    register_service: [weather]
    toggle_service: [weather]
    modify_service: [weather]
    health_check_service: [weather]
  ui-modify-one:
    modify_service: [weather]
  ui-list-one:
    list_service: [weather]
gateway-tools:
- server: mcpgw
  methods: [tools/list, tools/call, resources/list, resources/read]
  tools: ["*"]
everything:
- server: "*"
  methods: ["*"]
  tools: ["*"]
forecast:
- server: weather
  methods: [tools/list, tools/call]
  tools: [get_forecast]
staff:
- server: echo
  methods: [tools/list, tools/call]
  tools: [echo]
weather-users:
- server: weather
  methods: [tools/list, tools/call]
  tools: ["*"]
mixed:
- server: weather
  methods: [tools/list]
  tools: ["*"]
- server: echo
  methods: [tools/list]
  tools: ["*"]
wild:
- server: "*"
  methods: [tools/list]
  tools: ["*"]
doomed: []
"""


def services(*names: str) -> Callable[[dict[str, Any]], bool]:
    return lambda result: set(names) <= {service["name"] for service in result["services"]}


def group_rules_for(server: str) -> Callable[[dict[str, Any]], bool]:
    return lambda result: any(rule["server"] == server for rules in result["scopes"].values() for rule in rules)


def complete_groups(result: dict[str, Any]) -> bool:
    return bool(result["complete"]) and "wild" in result["scopes"] and "doomed" in result["scopes"]


def answered(key: str, value: object) -> Callable[[dict[str, Any]], bool]:
    return lambda result: result.get(key) == value


@dataclass(frozen=True)
class Cell:
    """One row of the matrix: a tool on a target, and what each principal gets.

    Letters, in `PRINCIPALS` order: `A` allowed (and the answer shows the target), `F` allowed
    but the target filtered out, `D` refused with `denial`, `H` hidden: not listed, and calling
    it is answered like an unknown tool.
    """

    tool: str
    target: str
    expected: str
    arguments: dict[str, Any] = field(default_factory=dict)
    denial: str = ""
    shows: Callable[[dict[str, Any]], bool] | None = None
    later_refusal: bool = False
    """The tool's own later checks may refuse an allowed call (register_service's URL checks)."""

    @property
    def id(self) -> str:
        return f"{self.tool}-{self.target}"


def _listing(tool: str) -> list[Cell]:
    return [
        Cell(tool, "own", "A A H A H", shows=services("weather")),
        Cell(tool, "other", "A F H F H", shows=services("echo")),
        Cell(tool, "all", "A F H F H", shows=services("weather", "echo")),
    ]


def _needs(action: str, permission: str, where: str = "server 'echo'") -> str:
    return f"{action} needs the {permission} permission for {where}."


Shows = Callable[[dict[str, Any]], bool]


def _pair(
    tool: str,
    own: str,
    other: str,
    arguments: Callable[[str], dict[str, Any]],
    action: str,
    permission: str,
    *,
    shows: Callable[[str], Shows | None] = lambda server: None,
    later_refusal: bool = False,
) -> list[Cell]:
    """`tool` on the server its holders may manage (weather: letters `own`) and on another one (echo: letters
    `other`, refused without `permission` on it)."""
    return [
        Cell(tool, "own", own, arguments("weather"), shows=shows("weather"), later_refusal=later_refusal),
        Cell(
            tool,
            "other",
            other,
            arguments("echo"),
            denial=_needs(action, permission),
            shows=shows("echo"),
            later_refusal=later_refusal,
        ),
    ]


def _on_group_mappings(tool: str, group: str, answer: str) -> Cell:
    """`tool` on `group`: it changes group_mappings, which takes modify_service on every server."""
    return Cell(
        tool,
        "all",
        "A D D H H",
        {"group_name": group},
        denial=_needs(f"{tool} (it changes group_mappings)", "modify_service", "all servers"),
        shows=answered(answer, group),
    )


def _service(server: str) -> dict[str, Any]:
    return {"service_name": server}


def _staff(server: str) -> dict[str, Any]:
    return {"server_name": server, "group_names": ["staff"]}


MATRIX: list[Cell] = [
    *_listing("list_services"),
    *_listing("healthcheck"),
    *_listing(HEALTH),
    Cell("list_groups", "own", "A A H A H", shows=group_rules_for("weather")),
    Cell("list_groups", "other", "A F H F H", shows=group_rules_for("echo")),
    Cell("list_groups", "all", "A F H F H", shows=complete_groups),
    Cell(
        "recent_activity",
        "all",
        "A D H D H",
        denial=_needs("Reading the audit log", "list_service", "all servers"),
        shows=answered("audit_log", True),
    ),
    *_pair(
        "refresh_service",
        "A A H H H",
        "A D H H H",
        _service,
        "Refreshing a server",
        "health_check_service",
        shows=lambda server: answered("name", server),
    ),
    *_pair(
        "toggle_service",
        "A A H H H",
        "A D H H H",
        lambda server: {**_service(server), "enabled": True},
        "Enabling or disabling a server",
        "toggle_service",
        shows=lambda server: answered("service", server),
    ),
    *_pair(
        "register_service",
        "A A H H H",
        "A D H H H",
        lambda server: {**_service(server), "url": f"https://{server}.example/mcp"},
        "Registering a server",
        "register_service",
        later_refusal=True,
    ),
    *_pair(
        "add_server_to_scopes_groups",
        "A A A H H",
        "A D D H H",
        _staff,
        "add_server_to_scopes_groups",
        "modify_service",
        shows=lambda server: answered("added_to", ["staff"]) if server == "weather" else None,
    ),
    *_pair(
        "remove_server_from_scopes_groups",
        "A A A H H",
        "A D D H H",
        _staff,
        "remove_server_from_scopes_groups",
        "modify_service",
        shows=lambda server: answered("removed_from", ["staff"]),
    ),
    _on_group_mappings("create_group", "fresh-group", "created"),
    _on_group_mappings("delete_group", "doomed", "deleted"),
    Cell(
        "generate_token",
        "own",
        "A A A A A",
        {"scopes": [], "ttl_seconds": 60},
        shows=lambda result: len(result["parent_jti"]) == 1,
    ),
    # last: these take servers away
    *_pair(
        "remove_service",
        "A A A H H",
        "A D D H H",
        _service,
        "Removing a server",
        "modify_service",
        shows=lambda server: answered("removed", server),
    ),
]


Upstreams = Mapping[str, str]
"""The /mcp URL of each upstream, by name: weather and echo."""


@pytest.fixture(scope="module")
def upstreams(weather_url: str, echo_url: str) -> Upstreams:
    return {"weather": weather_url, "echo": echo_url}


def gateway(directory: Path, upstreams: Upstreams) -> AbstractAsyncContextManager[LiveGateway]:
    return serve_upstreams(directory, upstreams, scopes=SCOPES)


async def observe(client: Client, cell: Cell, listed: set[str], resources: set[str]) -> str:
    """The letter this principal actually got for `cell` (or what went wrong instead)."""
    try:
        if cell.tool == HEALTH:
            read = await client.read_resource(HEALTH)
            content = read.contents[0]
            assert isinstance(content, types.TextResourceContents)
            result: dict[str, Any] = json.loads(content.text)
        else:
            answer = await client.call_tool(cell.tool, cell.arguments)
            if answer.is_error:
                return f"tool error: {answer.content}"
            assert answer.structured_content is not None
            result = answer.structured_content
    except MCPError as error:
        hidden = cell.tool not in (resources if cell.tool == HEALTH else listed)
        if error.message.startswith((f"Unknown tool '{cell.tool}'", f"Unknown resource '{cell.tool}'")):
            return "H" if hidden else f"listed, but unknown: {error.message}"
        if cell.denial and error.message == cell.denial:
            return "D"
        if cell.later_refusal and "permission" not in error.message:
            return "A"  # the permission passed; the tool's own checks refused the registration
        return f"error: {error.message}"
    if cell.shows is None or cell.shows(result):
        return "A"
    return "F"


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_every_admin_tool_checks_its_permission_on_the_server_it_touches(
    tmp_path: Path, upstreams: Upstreams, principal: str, era: Era
) -> None:
    column = PRINCIPALS.index(principal)
    wrong: list[str] = []
    async with (
        gateway(tmp_path, upstreams) as live,
        live.client(principal, groups=[principal], era=era, path=ADMIN) as client,
    ):
        listed = {tool.name for tool in (await client.list_tools()).tools}
        resources = {str(resource.uri) for resource in (await client.list_resources()).resources}
        for cell in MATRIX:
            expected = cell.expected.split()[column]
            got = await observe(client, cell, listed, resources)
            if got != expected:
                wrong.append(f"{cell.id}: expected {expected}, got {got}")
        remaining = load_servers(live.servers_file).servers
        policy = yaml.safe_load(live.scopes_file.read_text())
    assert not wrong, "\n".join(wrong)
    # what a user notices afterwards: only the allowed changes happened
    allowed = {cell.id for cell in MATRIX if cell.expected.split()[column] == "A"}
    assert ("weather" in remaining) == ("remove_service-own" not in allowed)
    assert ("echo" in remaining) == ("remove_service-other" not in allowed)
    assert ("fresh-group" in policy) == ("create_group-all" in allowed)
    assert ("doomed" in policy) == ("delete_group-all" not in allowed)
    staff_servers = {rule["server"] for rule in policy["staff"]}
    assert ("echo" in staff_servers) == ("remove_server_from_scopes_groups-other" not in allowed)
    assert "weather" not in staff_servers  # added and removed again, or never added


@dataclass(frozen=True)
class Edit:
    """A scopes.yml edit by a principal: refused with `refusal` (file unchanged), or allowed."""

    principal: str
    tool: str
    arguments: dict[str, Any]
    refusal: str | None
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    then: Callable[[dict[str, Any]], bool] | None = None
    """For allowed edits: what the file shows afterwards."""


def gained(what: str) -> str:
    return f"This change would give you {what}, which you do not hold now"


def _already_exists(group: str) -> Edit:
    """An admin's create_group of `group`, which exists, without overwrite: refused."""
    return Edit(
        "admin",
        "create_group",
        {"group_name": group},
        f"The scopes group '{group}' already exists. Pass overwrite: true",
    )


EDITS: dict[str, Edit] = {
    # a caller can never widen its own access
    "admin adds a server to its own group": Edit(
        "admin", "add_server_to_scopes_groups", {"server_name": "weather", "group_names": ["gateway-tools"]},
        gained("access to server 'weather'"),
    ),
    "one-server operator adds its server to its own group": Edit(
        "operator-one", "add_server_to_scopes_groups",
        {"server_name": "weather", "group_names": ["gateway-tools"], "tools": ["get_forecast"]},
        gained("access to server 'weather'"),
    ),
    "one-server modifier adds its server to its own group among others": Edit(
        "modify-one", "add_server_to_scopes_groups",
        {"server_name": "weather", "group_names": ["staff", "gateway-tools"]},
        gained("access to server 'weather'"),
    ),
    "a group reached through the token's own scope claim": Edit(
        "operator-one", "add_server_to_scopes_groups", {"server_name": "weather", "group_names": ["staff"]},
        gained("access to server 'weather'"), scopes=("staff",),
    ),
    "a group reached through a second IdP group": Edit(
        "modify-one", "add_server_to_scopes_groups", {"server_name": "weather", "group_names": ["staff"]},
        gained("access to server 'weather'"), groups=("staff",),
    ),
    "a wider tool pattern than the caller holds": Edit(
        "operator-one", "add_server_to_scopes_groups",
        {"server_name": "weather", "group_names": ["forecast"], "methods": ["tools/call"], "tools": ["get_*"]},
        gained("tools/call of tool 'get_*' on server 'weather'"), groups=("forecasters",),
    ),
    "a method the caller does not hold": Edit(
        "operator-one", "add_server_to_scopes_groups",
        {"server_name": "weather", "group_names": ["forecast"], "methods": ["prompts/get"], "tools": ["get_forecast"]},
        gained("prompts/get of tool 'get_forecast' on server 'weather'"), groups=("forecasters",),
    ),
    "exactly what the caller already holds": Edit(
        "operator-one", "add_server_to_scopes_groups",
        {"server_name": "weather", "group_names": ["forecast"], "methods": ["tools/call"], "tools": ["get_forecast"]},
        None, groups=("forecasters",),
        then=lambda policy: policy["forecast"] == [
            {"server": "weather", "methods": ["tools/call"], "tools": ["get_forecast"]}
        ],
    ),
    "a caller that holds every server already": Edit(
        "root", "add_server_to_scopes_groups", {"server_name": "weather", "group_names": ["everything"]}, None,
        then=lambda policy: [rule["server"] for rule in policy["everything"]] == ["*", "weather"],
    ),
    "narrowing its own group is allowed": Edit(
        "operator-one", "remove_server_from_scopes_groups", {"server_name": "weather", "group_names": ["forecast"]},
        None, groups=("forecasters",), then=lambda policy: policy["forecast"] == [],
    ),
    "creating a group named after the caller's own IdP group, then filling it": Edit(
        "admin", "add_server_to_scopes_groups", {"server_name": "echo", "group_names": ["newcomers"]},
        gained("access to server 'echo'"), groups=("newcomers",),
    ),
    # existing names, reserved names, UI-Scopes roles
    "create_group refuses an existing scopes group": _already_exists("staff"),
    "create_group refuses an existing IdP group mapping": _already_exists("idp-only"),
    "create_group refuses the admins' own group": _already_exists("admin"),
    "create_group refuses a UI-Scopes role": Edit(
        "admin", "create_group", {"group_name": "ui-admin"},
        "'ui-admin' is a UI-Scopes role: mapping the IdP group 'ui-admin' to it would hand out its admin permissions",
    ),
    "create_group refuses a UI-Scopes role even with overwrite": Edit(
        "admin", "create_group", {"group_name": "ui-list-one", "overwrite": True},
        "'ui-list-one' is a UI-Scopes role",
    ),
    "create_group refuses a reserved key": Edit(
        "admin", "create_group", {"group_name": "group_mappings"}, "'group_mappings' is a reserved key of scopes.yml",
    ),
    "create_group refuses the UI-Scopes key": Edit(
        "admin", "create_group", {"group_name": "UI-Scopes", "overwrite": True}, "'UI-Scopes' is a reserved key",
    ),
    "overwrite replaces an existing group with an empty one": Edit(
        "admin", "create_group", {"group_name": "staff", "overwrite": True}, None,
        then=lambda policy: policy["staff"] == [] and policy["group_mappings"]["staff"] == ["staff"],
    ),
    "overwrite of an IdP mapping replaces the mapping": Edit(
        "admin", "create_group", {"group_name": "idp-only", "overwrite": True}, None,
        then=lambda policy: policy["group_mappings"]["idp-only"] == ["idp-only"] and policy["idp-only"] == [],
    ),
    "overwrite still needs modify_service for all": Edit(
        "operator-one", "create_group", {"group_name": "forecast", "overwrite": True},
        "create_group (it changes group_mappings) needs the modify_service permission for all servers.",
    ),
    "delete_group keeps the other scopes of a mapping": Edit(
        "admin", "delete_group", {"group_name": "staff"}, None,
        then=lambda policy: "staff" not in policy
        and policy["group_mappings"]["pair"] == ["weather-users"]
        and "staff" not in policy["group_mappings"],
    ),
    "delete_group refuses a mapping-only name": Edit(
        "admin", "delete_group", {"group_name": "idp-only"}, "Unknown scopes group 'idp-only'.",
    ),
    "a one-server modifier cannot delete the admins' scopes": Edit(
        "modify-one", "delete_group", {"group_name": "gateway-tools"},
        "delete_group (it changes group_mappings) needs the modify_service permission for all servers.",
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=ERAS)
async def edited(
    request: pytest.FixtureRequest, upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[LiveGateway, Era]]:
    """One gateway per era for the scopes.yml edits; each test starts from `SCOPES` (`reset`)."""
    async with gateway(tmp_path_factory.mktemp("edits"), upstreams) as live:
        yield live, request.param


_resets = itertools.count()


def reset(live: LiveGateway) -> None:
    """Put `SCOPES` back and in force at once (a counter comment makes every write a change)."""
    live.scopes_file.write_text(f"{SCOPES}# reset {next(_resets)}\n")
    assert live.gateway.guard.policy.reload_if_changed()


@pytest.mark.parametrize("case", list(EDITS))
async def test_scopes_edits_are_refused_unless_allowed_and_never_widen_the_caller(
    edited: tuple[LiveGateway, Era], case: str
) -> None:
    live, era = edited
    reset(live)
    edit = EDITS[case]
    groups = [edit.principal, *edit.groups]
    async with live.client(edit.principal, groups=groups, scopes=edit.scopes, era=era, path=ADMIN) as client:
        if case.startswith("creating a group named after"):
            created = await client.call_tool("create_group", {"group_name": "newcomers"})
            assert not created.is_error, created.content  # an empty group gives nothing: allowed
        tools = {tool.name for tool in (await client.list_tools()).tools}
        before = live.scopes_file.read_text()
        if edit.refusal is None:
            result = await client.call_tool(edit.tool, edit.arguments)
            assert not result.is_error, result.content
            assert edit.then is not None and edit.then(yaml.safe_load(live.scopes_file.read_text()))
            return
        with pytest.raises(MCPError) as refused:
            await client.call_tool(edit.tool, edit.arguments)
        assert refused.value.message.startswith(edit.refusal), refused.value.message
        assert live.scopes_file.read_text() == before
    async with live.client(edit.principal, groups=groups, scopes=edit.scopes, era=era, path=ADMIN) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == tools


LISTED_GROUPS = {
    "admin": None,  # everything
    "list-one": {
        "scopes": {
            "forecast": ["weather"],
            "weather-users": ["weather"],
            "mixed": ["weather"],
        },
        "groups": {"forecasters": ["forecast"], "idp-only": ["weather-users"], "pair": ["weather-users"]},
    },
    "operator-one": {
        "scopes": {"forecast": ["weather"], "weather-users": ["weather"], "mixed": ["weather"]},
        "groups": {"forecasters": ["forecast"], "idp-only": ["weather-users"], "pair": ["weather-users"]},
    },
}


@pytest.mark.parametrize("principal", list(LISTED_GROUPS))
async def test_list_groups_shows_only_the_rules_of_servers_the_caller_may_list(
    edited: tuple[LiveGateway, Era], principal: str
) -> None:
    live, era = edited
    reset(live)
    async with live.client(principal, groups=[principal], era=era, path=ADMIN) as client:
        result = await client.call_tool("list_groups", {})
    listed = result.structured_content
    assert listed is not None
    expected = LISTED_GROUPS[principal]
    if expected is None:
        everything = yaml.safe_load(SCOPES)
        assert listed["complete"] is True
        assert set(listed["scopes"]) == set(everything) - {"group_mappings", "UI-Scopes"}
        assert listed["groups"] == everything["group_mappings"]
        return
    assert listed["complete"] is False
    assert {name: [rule["server"] for rule in rules] for name, rules in listed["scopes"].items()} == expected["scopes"]
    assert listed["groups"] == expected["groups"]
    assert "echo" not in json.dumps(listed) and "ui-admin" not in json.dumps(listed)
