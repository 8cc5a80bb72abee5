"""Import mcp-gateway-registry's server records into servers.yaml (`mcp-aggregator import DIR`).

The seed keeps one JSON record per server (`registry/servers/<name>.json`: `server_name`, `path`,
`proxy_pass_url`, `description`, `tags`, `supported_transports`, `transport`, `mcp_endpoint`,
`sse_endpoint`, `auth_scheme`/`auth_type`, `headers`, `deployment` + `local_runtime`, ...) and
`server_state.json` (`path` -> enabled). Each record becomes one entry:

- its name is its `path` without slashes, lowercased; it must be a valid server name;
- remote records get their `streamable-http` or `sse` URL the way the seed's own client found it
  (`mcp_endpoint`/`sse_endpoint`, a URL already ending in `/mcp` or `/sse`, else that suffix added);
  `deployment: local` records become stdio commands (npx, uvx, docker or the command itself);
- with a state file, a server it does not list is disabled (the seed's default); without one the
  record's `is_enabled` counts, else enabled;
- credentials never come along: the seed stores them encrypted, and header values that look like
  secrets are dropped; the report says what to configure instead.

The gateway's own server (`mcpgw`) is skipped: its tools are built in. An existing entry is kept
unless `replace`. Every entry is validated on its own before it is added, so one bad record is
reported and skipped without failing the others; the file is then written atomically, under the
registry's lock, and a running gateway picks it up like any edit.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread

from aggregator.config.yamlfile import YamlDocument
from aggregator.errors import ConfigError, ConfigIssue
from aggregator.registry.models import SERVER_NAME_PATTERN, ServersFile, load_servers, validate_servers
from aggregator.registry.store import RawServers, Registry, current_raw, picked_up_by_watchers

logger = logging.getLogger(__name__)

STATE_FILE = "server_state.json"
_SECRET_HEADER = re.compile(r"authorization|cookie|token|secret|api[-_]?key|password", re.IGNORECASE)
_LAUNCHERS = {"npx": "npx", "uvx": "uvx", "docker": "docker"}

Action = Literal["imported", "replaced", "skipped"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one record, and why."""

    source: str
    name: str | None
    action: Action
    detail: str
    notes: tuple[str, ...] = ()


@dataclass(slots=True)
class ImportReport:
    """Every record's outcome, in file order."""

    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, *actions: Action) -> int:
        return sum(outcome.action in actions for outcome in self.outcomes)

    @property
    def changes(self) -> int:
        return self.count("imported", "replaced")


@dataclass(frozen=True, slots=True)
class Seed:
    """The records read from a seed directory and its state file."""

    records: tuple[tuple[str, dict[str, Any]], ...]
    states: dict[str, bool] | None
    unreadable: tuple[Outcome, ...]


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def read_seed(directory: Path) -> Seed:
    """Every `*.json` record in `directory` (sorted by file name) and `server_state.json`, if present."""
    if not directory.is_dir():
        raise ConfigError([ConfigIssue(str(directory), "", "not a directory")])
    records: list[tuple[str, dict[str, Any]]] = []
    unreadable: list[Outcome] = []
    for path in sorted(directory.glob("*.json")):
        if path.name == STATE_FILE:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            unreadable.append(Outcome(path.name, None, "skipped", f"cannot be read as JSON: {error}"))
            continue
        if not isinstance(data, dict) or not isinstance(data.get("path"), str):
            unreadable.append(Outcome(path.name, None, "skipped", "not a server record (no 'path')"))
            continue
        records.append((path.name, data))
    return Seed(tuple(records), _read_states(directory / STATE_FILE), tuple(unreadable))


def _read_states(path: Path) -> dict[str, bool] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError([ConfigIssue(str(path), "", f"cannot be read as JSON: {error}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(str(path), "", "expected an object of path -> true/false")])
    return {_normal_path(str(key)): bool(value) for key, value in data.items()}


def plan(seed: Seed, raw: RawServers, *, replace: bool, reserved: frozenset[str], source: Path) -> ImportReport:
    """Add every importable record to `raw` (in place), each validated with what is already there."""
    validate_entry(raw, source)  # a file that is already broken is refused whole, not blamed on a record
    report = ImportReport(list(seed.unreadable))
    seen: dict[str, str] = {}
    for file_name, record in seed.records:
        name = _normal_path(record["path"]).lower()
        try:
            if not re.match(SERVER_NAME_PATTERN, name):
                raise _Skip(f"path {record['path']!r} does not make a server name (1-32 of a-z, 0-9, '-')")
            if name in reserved:
                raise _Skip(f"'{name}' is the gateway's own server; its tools are built in")
            if name in seen:
                raise _Skip(f"'{name}' was already imported from {seen[name]}")
            existed = name in raw
            if existed and not replace:
                raise _Skip(f"'{name}' is already registered (use --replace to overwrite it)")
            entry, notes = entry_for(record, _enabled(record, seed.states))
            candidate = {**raw, name: entry}
            problems = validate_entry(candidate, source, name)
            if problems:
                raise _Skip("; ".join(problems))
        except _Skip as skip:
            report.outcomes.append(Outcome(file_name, name or None, "skipped", skip.reason))
            continue
        raw[name] = entry
        seen[name] = file_name
        report.outcomes.append(Outcome(file_name, name, "replaced" if existed else "imported", summary(entry), notes))
    return report


async def import_seed(
    directory: Path, registry: Registry, *, replace: bool = False, reserved: frozenset[str] = frozenset()
) -> ImportReport:
    """Import the seed in `directory` into the registry's file; nothing is written when nothing changes."""
    seed = await anyio.to_thread.run_sync(read_seed, directory)
    report = await anyio.to_thread.run_sync(partial(dry_run, seed, registry.path, replace=replace, reserved=reserved))
    if report.changes:

        def edit(raw: RawServers) -> None:
            nonlocal report
            report = plan(seed, raw, replace=replace, reserved=reserved, source=registry.path)

        await registry.change(edit)
    logger.info(
        "registry.imported",
        extra={"file": str(registry.path), "imported": report.changes, "skipped": report.count("skipped")},
    )
    return report


async def import_into(
    directory: Path, servers_file: Path, *, replace: bool = False, reserved: frozenset[str] = frozenset()
) -> ImportReport:
    """Import into `servers_file` from a process that serves nothing (the CLI)."""
    current = await anyio.to_thread.run_sync(_current, servers_file)
    registry = Registry(servers_file, current, picked_up_by_watchers)
    return await import_seed(directory, registry, replace=replace, reserved=reserved)


def _current(servers_file: Path) -> ServersFile:
    return load_servers(servers_file) if servers_file.exists() else ServersFile()


def dry_run(seed: Seed, servers_file: Path, *, replace: bool, reserved: frozenset[str]) -> ImportReport:
    """What importing `seed` into `servers_file` would do, changing nothing."""
    return plan(seed, current_raw(servers_file), replace=replace, reserved=reserved, source=servers_file)


def entry_for(record: dict[str, Any], enabled: bool) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The servers.yaml entry for one seed record, and notes for the operator."""
    notes: list[str] = []
    if record.get("deployment") == "local":
        entry = _stdio_entry(record.get("local_runtime"), notes)
    else:
        entry = _http_entry(record, notes)
    description = " ".join(str(record.get("description") or record.get("server_name") or "").split())
    if description:
        entry["description"] = description
    tags = [str(tag) for tag in record.get("tags") or [] if isinstance(tag, str | int)]
    if tags:
        entry["tags"] = tags
    entry["enabled"] = enabled
    scheme = str(record.get("auth_scheme") or record.get("auth_type") or "none").lower()
    if scheme not in ("none", ""):
        notes.append(f"uses {scheme} auth; its credential is not imported: add an `auth` section")
    return entry, tuple(notes)


def _http_entry(record: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    base = record.get("proxy_pass_url")
    if not isinstance(base, str) or not base:
        raise _Skip("a remote record without proxy_pass_url")
    transport = _transport(record)
    explicit = record.get("mcp_endpoint" if transport == "streamable-http" else "sse_endpoint")
    suffix = "/mcp" if transport == "streamable-http" else "/sse"
    if isinstance(explicit, str) and explicit:
        url = explicit
    elif base.rstrip("/").endswith(suffix) or f"{suffix}/" in base:
        url = base
    else:
        url = base.rstrip("/") + suffix
    entry: dict[str, Any] = {"transport": transport, "url": url}
    headers: dict[str, str] = {}
    for item in record.get("headers") or []:
        for key, value in item.items() if isinstance(item, dict) else ():
            if _SECRET_HEADER.search(str(key)):
                notes.append(f"header {key} looks like a credential and was not imported")
            else:
                headers[str(key)] = str(value)
    if headers:
        entry["headers"] = headers
    return entry


def _transport(record: dict[str, Any]) -> str:
    preferred = record.get("transport")
    if preferred in ("streamable-http", "sse"):
        return str(preferred)
    supported = [str(t) for t in record.get("supported_transports") or ["streamable-http"]]
    if "streamable-http" in supported:
        return "streamable-http"
    if "sse" in supported:
        return "sse"
    raise _Skip(f"no HTTP transport among {supported} and no local_runtime")


def _stdio_entry(runtime: Any, notes: list[str]) -> dict[str, Any]:
    if not isinstance(runtime, dict) or not runtime.get("package"):
        raise _Skip("a local record without local_runtime.package")
    kind = str(runtime.get("type"))
    package = str(runtime["package"])
    args = [str(arg) for arg in runtime.get("args") or []]
    env = {str(key): str(value) for key, value in (runtime.get("env") or {}).items()}
    for variable in runtime.get("required_env") or []:
        env[str(variable)] = f"${{{variable}}}"  # from the gateway's environment, never written out
        notes.append(f"needs {variable} in the gateway's environment")
    if kind == "command":
        entry: dict[str, Any] = {"transport": "stdio", "command": package, "args": args}
    elif kind in _LAUNCHERS:
        version = runtime.get("version")
        pinned = f"{package}@{version}" if version and kind != "docker" else package
        if kind == "docker":
            flags = [flag for variable in env for flag in ("-e", variable)]
            launcher_args = ["run", "-i", "--rm", *flags, pinned, *args]
        else:
            launcher_args = [pinned, *args]
        entry = {"transport": "stdio", "command": _LAUNCHERS[kind], "args": launcher_args}
    else:
        raise _Skip(f"unknown local_runtime.type {kind!r}")
    if env:
        entry["env"] = env
    return entry


def _enabled(record: dict[str, Any], states: dict[str, bool] | None) -> bool:
    if states is not None:
        return states.get(_normal_path(record["path"]), False)
    return bool(record.get("is_enabled", True))


def validate_entry(
    raw: RawServers, source: Path, name: str | None = None, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Problems of `raw` as a servers file; with `name`, only that entry's are returned.

    `environ` fills `${VAR}` references (default: this process's environment).
    """
    try:
        validate_servers(YamlDocument(source, {"servers": raw}), environ)
    except ConfigError as error:
        if name is None:
            raise
        prefix = f"servers.{name}"
        return [f"{issue.path.removeprefix(prefix).lstrip('.') or 'entry'}: {issue.reason}" for issue in error.issues]
    return []


def _normal_path(path: str) -> str:
    return path.strip().strip("/")


def summary(entry: dict[str, Any]) -> str:
    """`stdio npx -y server, enabled`: one entry on one line, for reports."""
    where = entry.get("url") or " ".join([entry.get("command", ""), *entry.get("args", [])])
    state = "enabled" if entry.get("enabled", True) else "disabled"
    return f"{entry['transport']} {where}, {state}"


def describe(report: ImportReport, servers_file: Path, *, dry_run: bool) -> list[str]:
    """The report as lines for a terminal."""
    verb = "would import" if dry_run else "imported"
    lines = [f"{servers_file}: {verb} {report.changes}, skipped {report.count('skipped')}"]
    for outcome in report.outcomes:
        mark = {"imported": "+", "replaced": "~", "skipped": "-"}[outcome.action]
        label = outcome.name or "?"
        detail = outcome.detail if outcome.action != "skipped" else f"skipped: {outcome.detail}"
        lines.append(f"  {mark} {label} ({outcome.source}): {detail}")
        lines.extend(f"      note: {note}" for note in outcome.notes)
    return lines
