"""The servers a gateway runs: the operator's servers.yaml entries, then what each followed registry gives.

An entry of servers.yaml always wins: a followed server whose name or exported prefix is already
taken is left out, and the conflict is reported on its registry's status. Registries are merged in
name order, so which of two registries wins a name does not depend on which answered first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aggregator.registry.federation_select import Following
from aggregator.registry.models import AnyUpstream, ServersFile, exported_prefix


@dataclass(frozen=True, slots=True)
class Merged:
    """The servers to run, and per registry the followed servers left out (one sentence each)."""

    servers: ServersFile
    conflicts: dict[str, tuple[str, ...]]


def merge(local: ServersFile, followed: Mapping[str, Following]) -> Merged:
    """`local`'s servers plus every followed upstream whose name and exported prefix are free."""
    servers: dict[str, AnyUpstream] = dict(local.servers)
    prefixes = {prefix: name for name, spec in servers.items() if (prefix := exported_prefix(name, spec))}
    conflicts: dict[str, tuple[str, ...]] = {}
    for registry in sorted(followed):
        if registry not in local.registries:
            continue  # no longer configured: its servers go
        left_out: list[str] = []
        for name, spec in followed[registry].upstreams.items():
            prefix = exported_prefix(name, spec)
            if name in servers:
                owner = "servers.yaml" if name in local.servers else "another registry"
                left_out.append(f"'{name}' is left out: {owner} already has a server of that name.")
            elif prefix in prefixes:
                left_out.append(f"'{name}' is left out: server '{prefixes[prefix]}' exports under '{prefix}'.")
            else:
                servers[name] = spec
                prefixes[prefix] = name
        if left_out:
            conflicts[registry] = tuple(left_out)
    return Merged(local.model_copy(update={"servers": servers}), conflicts)
