"""`mcp-aggregator import --from HOST FILE`: a host's servers merged into servers.yaml in one command.

The entries come from `aggregator.registry.hosts`; this module merges them the way the seed
importer does (`aggregator.registry.importer`): each entry validated on its own and reported
(imported, replaced, or skipped with the reason), existing names kept unless `replace`, the
gateway's own name refused, a dry run that writes nothing, and one locked, atomic write.

An imported entry is the operator's (the importer is an operator command run against the
operator's file): it carries no `registered_by`, so a stdio command is written as the host ran
it, `${VAR}` references are expanded from the gateway's environment, and its addresses are not
checked against `admin_allowed_networks`. The credentials taken out of the host's file are
returned, never written into servers.yaml; `write_env_file` puts them in a mode-0600 file of
`NAME=value` lines when the operator asks for one.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from aggregator.config.files import locked, write_atomically
from aggregator.registry.hosts import Conversion, Secret, convert, read_host_file
from aggregator.registry.importer import Action, ImportReport, Outcome, summary, validate_entry
from aggregator.registry.models import ServersFile
from aggregator.registry.store import RawServers, Registry, current_raw, picked_up_by_watchers

logger = logging.getLogger(__name__)

PLACEHOLDER = "set-in-the-gateway-environment"


class _GatewayEnvironment(Mapping[str, str]):
    """This process's environment, with every other variable present as a placeholder.

    The import is validated for its shape; whether a `${VAR}` is set matters in the gateway's
    environment, later, not in the shell that runs the import.
    """

    def __getitem__(self, name: str) -> str:
        return os.environ.get(name, PLACEHOLDER)

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


ANY_VARIABLE = _GatewayEnvironment()


@dataclass(frozen=True, slots=True)
class HostImport:
    """What importing a host's file did (or would do), and what the gateway's environment must hold."""

    report: ImportReport
    secrets: tuple[Secret, ...]
    variables: tuple[str, ...]
    """Every variable the imported entries reference, sorted (those in `secrets` and the host's own)."""


def plan(
    conversions: list[Conversion], raw: RawServers, *, replace: bool, reserved: frozenset[str], source: Path
) -> HostImport:
    """Add every convertible entry to `raw` (in place), each validated with what is already there."""
    report = ImportReport()
    secrets: list[Secret] = []
    variables: set[str] = set()
    seen: dict[str, str] = {}
    for conversion in conversions:
        name = conversion.name
        reason = conversion.reason
        if reason is None and name is not None:
            if name in reserved:
                reason = f"'{name}' is the gateway's own server name; rename the entry in the host's file"
            elif name in seen:
                reason = f"'{name}' was already imported from '{seen[name]}'"
            elif name in raw and not replace:
                reason = f"'{name}' is already registered (use --replace to overwrite it)"
        if reason is None and name is not None and conversion.entry is not None:
            problems = validate_entry({**raw, name: conversion.entry}, source, name, ANY_VARIABLE)
            reason = "; ".join(problems) or None
        if reason is not None or name is None or conversion.entry is None:
            report.outcomes.append(Outcome(conversion.source, name, "skipped", reason or "not convertible"))
            continue
        action: Action = "replaced" if name in raw else "imported"
        raw[name] = conversion.entry
        seen[name] = conversion.source
        secrets += conversion.secrets
        variables |= conversion.variables
        notes = [*conversion.notes, *_needs(conversion)]
        report.outcomes.append(Outcome(conversion.source, name, action, summary(conversion.entry), tuple(notes)))
    return HostImport(report, tuple(secrets), tuple(sorted(variables)))


def _needs(conversion: Conversion) -> list[str]:
    taken = {secret.variable for secret in conversion.secrets}
    return [f"needs {variable} in the gateway's environment" for variable in sorted(conversion.variables - taken)]


def dry_run(path: Path, host: str, servers_file: Path, *, replace: bool, reserved: frozenset[str]) -> HostImport:
    """What importing the host's `path` into `servers_file` would do, changing nothing."""
    return _planned(convert(read_host_file(path, host), host, path), servers_file, replace=replace, reserved=reserved)


def _planned(
    conversions: list[Conversion], servers_file: Path, *, replace: bool, reserved: frozenset[str]
) -> HostImport:
    raw = current_raw(servers_file)
    validate_entry(raw, servers_file, environ=ANY_VARIABLE)  # a broken file is refused whole, not blamed on an entry
    return plan(conversions, raw, replace=replace, reserved=reserved, source=servers_file)


async def import_host_file(
    path: Path, host: str, servers_file: Path, *, replace: bool = False, reserved: frozenset[str] = frozenset()
) -> HostImport:
    """Import the host's `path` into `servers_file` (locked, atomic); nothing is written when nothing changes."""
    conversions = await anyio.to_thread.run_sync(lambda: convert(read_host_file(path, host), host, path))
    result = await anyio.to_thread.run_sync(
        lambda: _planned(conversions, servers_file, replace=replace, reserved=reserved)
    )
    if not result.report.changes:
        return result

    def edit(raw: RawServers) -> None:
        nonlocal result
        result = plan(conversions, raw, replace=replace, reserved=reserved, source=servers_file)

    await Registry(servers_file, ServersFile(), picked_up_by_watchers).change(edit, ANY_VARIABLE)
    logger.info(
        "registry.imported",
        extra={"file": str(servers_file), "imported": result.report.changes, "from": host},
    )
    return result


def write_env_file(path: Path, secrets: tuple[Secret, ...]) -> None:
    """Put the secrets in `path` as `NAME=value` lines (mode 0600), keeping its other lines."""
    values = {secret.variable: secret.value for secret in secrets}
    with locked(path):
        kept = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                name = line.split("=", 1)[0].removeprefix("export ").strip()
                if name not in values:
                    kept.append(line)
        lines = [*kept, *(f"{name}={shlex.quote(value)}" for name, value in values.items())]
        write_atomically(path, "\n".join(lines) + "\n")
        os.chmod(path, 0o600)


def describe_environment(result: HostImport, env_file: Path | None) -> list[str]:
    """What the operator must put in the gateway's environment, without any value."""
    if not result.variables:
        return []
    lines = ["The gateway's environment must hold (values were not written to servers.yaml):"]
    origins = {secret.variable: secret.where for secret in result.secrets}
    for variable in result.variables:
        origin = f"  (from {origins[variable]})" if variable in origins else "  (the host's own variable)"
        lines.append(f"  {variable}{origin}")
    if env_file is not None and result.secrets:
        lines.append(f"{env_file}: {len({s.variable for s in result.secrets})} values written (mode 0600)")
    elif result.secrets:
        lines.append("  (--env-file FILE writes the values taken from the host's file to FILE, mode 0600)")
    lines.append("Restart the gateway with them set: a running gateway keeps its servers until they are.")
    return lines
