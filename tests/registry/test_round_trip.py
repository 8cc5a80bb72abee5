"""Edits the gateway makes to servers.yaml keep the operator's file as written, except the keys that changed.

Each operator file below is written by hand in a different style (indentation, indented or flush
sequences, flow collections, quoting, `---`, comments above, beside and after entries). Each edit
is one the admin tools make (toggle, register, remove). Afterwards the file must read back as
exactly the intended data, and the text must differ from the original only in the lines of the
changed keys: every other line, comments included, is still there, in order.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import yaml

from aggregator.registry.models import ServersFile, StdioUpstream, load_servers
from aggregator.registry.store import RawServers, Registry
from tests.harness import ADMIN, ERAS, Era, call_structured, serve_gateway, serve_upstream
from tests.policies import admins_policy

pytestmark = pytest.mark.anyio

REPOSITORY = Path(__file__).resolve().parents[2]

TWO_SPACES = """\
# Upstream MCP servers of the demo gateway.
servers:
  weather:
    transport: streamable-http
    url: http://127.0.0.1:8101/mcp
    description: Forecasts, current conditions and alerts.
    tags: [demo, weather]
  notes:
    transport: stdio
    command: python
    args: ["-m", "examples.servers.notes"]   # found on PATH
    tags: [demo, notes]
  time:
    transport: stdio
    command: mcp-server-time
    args: ["--local-timezone", "UTC"]
"""

FOUR_SPACES = """\
---
# Servers of the team.    Keep them sorted by hand.

servers:
    weather:   # the demo one
        transport: streamable-http
        url: "http://127.0.0.1:8101/mcp"   # local
        tags: [demo, 'weather']
        enabled: yes

    # notes keeps a folder
    notes:
        transport: stdio
        command: python
        args:
            - -m
            - examples.servers.notes
        env: {NOTES_ROOT: '${HOME}/notes'}   # the operator's own: expanded

    # the clock
    time:
        transport: stdio
        command: mcp-server-time
# end of servers
"""

FLUSH_SEQUENCES = """\
servers:
  # first: the weather
  weather:
    transport: streamable-http
    url: http://127.0.0.1:8101/mcp
    tags:
    - demo
    - weather
  notes:
    transport: stdio
    enabled: false
    command: python
    args:
    - -m
    - examples.servers.notes
  time: {transport: stdio, command: mcp-server-time}   # flow style
"""

FILES = {"two-spaces": TWO_SPACES, "four-spaces": FOUR_SPACES, "flush-sequences": FLUSH_SEQUENCES}
NAMES = ("weather", "notes", "time")

Edit = Callable[[RawServers], None]
REGISTERED = {
    "transport": "streamable-http",
    "url": "http://registered.example/mcp",
    # Strings YAML 1.1 readers take for something else, and references that must stay literal.
    "description": "yes",
    "tags": ["on", "0777", "1:20", "${HOME}", "null", "~", "- dash", "#hash", "a: b"],
    "registered_by": "alice",
}


def toggle(name: str, enabled: bool) -> Edit:
    def edit(raw: RawServers) -> None:
        raw[name] = {**raw[name], "enabled": enabled}  # as toggle_service does: a new mapping

    return edit


def register(raw: RawServers) -> None:
    raw["registered"] = dict(REGISTERED)


def remove(name: str) -> Edit:
    return lambda raw: raw.pop(name) and None


EDITS: dict[str, Edit] = {
    **{f"disable-{name}": toggle(name, False) for name in NAMES},
    **{f"enable-{name}": toggle(name, True) for name in NAMES},
    "register": register,
    **{f"remove-{name}": remove(name) for name in NAMES},
}


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines taken out of `before` and the lines put into `after`."""
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def entry_lines(text: str, name: str) -> list[str]:
    """The lines of entry `name` in `text`, with the comment lines right above it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^\s+{name}:", line))
    indent = len(lines[start]) - len(lines[start].lstrip())
    top = start
    while top > 0 and lines[top - 1].strip().startswith("#") and len(lines[top - 1]) - len(lines[top - 1].lstrip()):
        top -= 1
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return lines[top:end]


async def unchanged(servers: ServersFile) -> None:
    pass


async def change(path: Path, edit: Edit) -> None:
    await Registry(path, load_servers(path), unchanged).change(edit)


@pytest.mark.parametrize("edit_name", list(EDITS))
@pytest.mark.parametrize("style", list(FILES))
async def test_an_edit_changes_only_its_keys(tmp_path: Path, style: str, edit_name: str) -> None:
    original = FILES[style]
    path = tmp_path / "servers.yaml"
    path.write_text(original)
    intended = yaml.safe_load(original)
    EDITS[edit_name](intended["servers"])

    await change(path, EDITS[edit_name])

    text = path.read_text()
    assert yaml.safe_load(text) == intended, "the file says what was meant"
    removed, added = changed_lines(original, text)
    verb, _, name = edit_name.partition("-")
    if verb in ("enable", "disable"):
        was = yaml.safe_load(original)["servers"][name].get("enabled")
        flag = "true" if verb == "enable" else "false"
        if was == (verb == "enable"):
            assert (removed, added) == ([], []), "a toggle to the current state writes nothing new"
        elif "{" in next(line for line in original.splitlines() if re.match(rf"^\s+{name}:", line)):
            assert len(removed) == len(added) == 1 and f"enabled: {flag}" in added[0]
        else:
            assert [line.strip() for line in added] == [f"enabled: {flag}"]
            assert all("enabled:" in line for line in removed)
    elif verb == "register":
        assert removed == []
        assert added[0].strip() == "registered:" and len(added) > 5
        assert text.index("registered:") > text.index("time:"), "a new entry goes last"
    else:
        assert added == []
        assert [line for line in removed if line.strip()] == [
            line for line in entry_lines(original, name) if line.strip()
        ]
    for line in original.splitlines():
        if line.lstrip().startswith("#") and line not in removed:
            assert line in text.splitlines(), f"comment {line!r} kept"


@pytest.mark.parametrize("style", list(FILES))
async def test_registered_values_stay_literal_through_later_edits(
    tmp_path: Path, style: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/home/secret-home")
    path = tmp_path / "servers.yaml"
    path.write_text(FILES[style])
    await change(path, register)
    for edit in (toggle("registered", False), toggle("weather", False), remove("time"), toggle("registered", True)):
        await change(path, edit)
    servers = load_servers(path).servers
    assert list(servers["registered"].tags) == REGISTERED["tags"]
    assert servers["registered"].description == "yes"
    assert "/home/secret-home" not in path.read_text()
    if style == "four-spaces":
        notes = servers["notes"]
        assert isinstance(notes, StdioUpstream)
        assert notes.env == {"NOTES_ROOT": "/home/secret-home/notes"}, "the operator's own entry is expanded"


async def test_a_file_a_round_trip_cannot_reproduce_is_still_changed(tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    # A duplicate key: PyYAML keeps the last, the round trip refuses; the change is made on a plain rewrite.
    first, last = ({"transport": "streamable-http", "url": f"http://{host}.example/mcp"} for host in "ab")
    path.write_text(yaml.safe_dump({"servers": {"weather": first}}) + f"  weather: {json.dumps(last)}\n")
    await change(path, toggle("weather", False))
    assert yaml.safe_load(path.read_text()) == {"servers": {"weather": {**last, "enabled": False}}}


async def test_concurrent_writers_lose_nothing_and_keep_the_comments(tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    path.write_text(FOUR_SPACES)
    replicas = [Registry(path, load_servers(path), unchanged) for _ in range(2)]

    def add(name: str) -> Edit:
        return lambda raw: raw.__setitem__(name, {**REGISTERED, "url": f"http://{name}.example/mcp"})

    async with anyio.create_task_group() as group:
        for index in range(12):
            group.start_soon(replicas[index % 2].change, add(f"added-{index}"))
    servers = load_servers(path).servers
    assert {f"added-{index}" for index in range(12)} <= set(servers)
    for line in FOUR_SPACES.splitlines():
        if line.lstrip().startswith("#"):
            assert line in path.read_text().splitlines()
    assert path.with_name("servers.yaml.lock").exists()
    assert not list(tmp_path.glob(".servers.yaml.*")), "no temporary file is left behind"  # noqa: ASYNC240


@pytest.mark.parametrize("lock", ["configs/servers.yaml.lock", "deploy/scopes.yml.lock"])
def test_the_lock_file_is_ignored_by_git(lock: str) -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", lock], cwd=REPOSITORY, check=False)
    assert ignored.returncode == 0, f"{lock} is not git-ignored"


@pytest.mark.parametrize("era", ERAS)
async def test_edits_through_the_admin_tools_keep_the_operators_file(tmp_path: Path, era: Era) -> None:
    async with (
        serve_upstream("weather") as weather_url,
        serve_gateway(tmp_path, servers={}, scopes=admins_policy(), admin_allowed_networks=["127.0.0.0/8"]) as live,
    ):
        commented = f"# Team servers; ask #platform before removing one.\nservers:\n{' ' * 4}# nothing yet\n"
        live.servers_file.write_text(commented)
        async with live.client("root", groups=["admins"], era=era, path=ADMIN) as admin:
            arguments = {"service_name": "weather", "url": weather_url, "description": "${HOME}"}
            await call_structured(admin, "register_service", arguments)
            await call_structured(admin, "toggle_service", {"service_name": "weather", "enabled": False})
            text = live.servers_file.read_text()
            assert text.startswith("# Team servers; ask #platform before removing one.\nservers:\n")
            assert "# nothing yet" in text
            entry = yaml.safe_load(text)["servers"]["weather"]
            assert (entry["description"], entry["enabled"], entry["registered_by"]) == ("${HOME}", False, "root")
            await call_structured(admin, "remove_service", {"service_name": "weather"})
        assert live.servers_file.read_text().startswith("# Team servers; ask #platform before removing one.\n")
