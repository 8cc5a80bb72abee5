"""`recent_activity`: the audit log read back, for operators (UI `list_service` for all servers).

The audit log (`policy/audit.py`) is JSON lines, one per decision and call. The tool reads only its
tail (the file may be large) in a worker thread, returns the latest entries, and summarises the
calls of the last `window_seconds` per upstream: calls per second, error rate and p95 latency.
Only calls count (`tools/call`, `prompts/get`, `resources/read`): lists are no upstream's work.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from pydantic import Field

from aggregator.catalog.catalog import Catalog
from aggregator.errors import UnknownNameError
from aggregator.policy.audit import AuditLog
from aggregator.policy.principal import Principal
from aggregator.policy.reload import PolicyHolder
from aggregator.tools.base import ALL, AdminTool, Arguments, require

CALL_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
SCAN_LIMIT = 5000
"""At most this many of the latest entries are read to compute the headline numbers."""
UNRESOLVED = "(unknown)"
"""The upstream of calls whose name resolves to no current server (unknown tools, removed servers)."""
CONSOLE_CLIENT = "mcp-aggregator-tui"
"""The operator console's `clientInfo` name (`tui.target.CLIENT_NAME`): its calls (polling, mostly)
are left out of the headline numbers, which are about what callers ask of the upstreams."""

_BLOCK = 65536
Entry = dict[str, Any]
UpstreamOf = Callable[[str, str | None], str]


class ActivityRequest(Arguments):
    limit: int = Field(default=50, ge=1, le=500, description="How many of the latest audit entries to return.")
    window_seconds: float = Field(default=60, gt=0, le=3600, description="Window of the headline numbers, seconds.")


class ActivityAdmin:
    """Reads the audit log for principals with `list_service` for all servers."""

    def __init__(
        self,
        policy: PolicyHolder,
        audit: AuditLog,
        catalog: Catalog,
        gateway_server: str,
        own_tools: Callable[[], Collection[str]],
    ) -> None:
        self._policy = policy
        self._audit = audit
        self._catalog = catalog
        self._gateway_server = gateway_server
        self._own_tools = own_tools

    def tools(self) -> list[AdminTool]:
        return [
            AdminTool(
                "recent_activity",
                "The latest audit-log entries (who called what, allowed or denied, latency) and, per upstream, "
                "calls per second, error rate and p95 latency over a recent window.",
                ActivityRequest,
                "list_service",
                self._activity,
            )
        ]

    async def _activity(self, principal: Principal, arguments: ActivityRequest) -> dict[str, Any]:
        require(self._policy.current, principal, "list_service", ALL, "Reading the audit log")
        upstream_of = upstream_resolver(self._catalog, frozenset(self._own_tools()), self._gateway_server)
        activity = await recent_activity(self._audit.path, arguments.limit, arguments.window_seconds, upstream_of)
        return {"you": principal.subject, **activity}


@dataclass(frozen=True, slots=True)
class Headline:
    """What one upstream (or the whole gateway) did in the window."""

    calls: int
    calls_per_second: float
    error_rate: float
    p95_ms: float | None


def read_tail(path: Path, count: int) -> list[Entry]:
    """The last `count` entries of the JSON-lines file at `path`, oldest first. Blocking.

    Reads backwards in blocks until it has enough lines; a torn or foreign line is skipped.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return []
    with handle:
        end = handle.seek(0, os.SEEK_END)
        data = b""
        position = end
        while position > 0 and data.count(b"\n") <= count:
            position = max(0, position - _BLOCK)
            handle.seek(position)
            data = handle.read(end - position)
    lines = data.splitlines()
    if position > 0:
        lines = lines[1:]  # the first line may be cut in the middle
    entries = []
    for line in lines[-count:]:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def summarise(entries: list[Entry], upstream_of: UpstreamOf, window: float, now: float) -> dict[str, Any]:
    """Headline numbers of the calls in the last `window` seconds: in total and per upstream."""
    recent = [
        e
        for e in entries
        if e.get("method") in CALL_METHODS
        and str(e.get("client") or "").partition("/")[0] != CONSOLE_CLIENT
        and now - _timestamp(e) <= window
    ]
    span = window
    if len(entries) >= SCAN_LIMIT and entries:
        span = min(window, max(now - _timestamp(entries[0]), 1e-3))  # the scan did not reach back far enough
    grouped: dict[str, list[Entry]] = {}
    for entry in recent:
        grouped.setdefault(upstream_of(entry["method"], entry.get("name")), []).append(entry)
    return {
        "total": asdict(_headline(recent, span)),
        "upstreams": {name: asdict(_headline(calls, span)) for name, calls in sorted(grouped.items())},
    }


async def recent_activity(path: Path | None, limit: int, window: float, upstream_of: UpstreamOf) -> dict[str, Any]:
    """The latest `limit` audit entries (oldest first) and the headline numbers of the last `window` s."""
    if path is None:
        return {"audit_log": False, "entries": [], "window_seconds": window, **summarise([], upstream_of, window, 0)}
    entries = await anyio.to_thread.run_sync(read_tail, path, max(limit, SCAN_LIMIT))
    return {
        "audit_log": True,
        "entries": entries[-limit:],
        "window_seconds": window,
        **summarise(entries, upstream_of, window, time.time()),
    }


def upstream_resolver(catalog: Catalog, own_tools: frozenset[str], gateway_server: str) -> UpstreamOf:
    """Which upstream a call went to, from the catalog as it is now (the gateway's own tools: `gateway_server`)."""

    def upstream_of(method: str, name: str | None) -> str:
        if name is None:
            return UNRESOLVED
        if method == "tools/call" and name in own_tools:
            return gateway_server
        try:
            if method == "tools/call":
                return catalog.resolve_tool(name).upstream
            if method == "prompts/get":
                return catalog.resolve_prompt(name).upstream
            return catalog.resolve_resource(name, lambda server: True)[0]
        except UnknownNameError:
            return UNRESOLVED

    return upstream_of


def _headline(calls: list[Entry], span: float) -> Headline:
    latencies = sorted(float(e["latency_ms"]) for e in calls if isinstance(e.get("latency_ms"), int | float))
    errors = sum(1 for e in calls if e.get("outcome", "ok") != "ok")
    return Headline(
        calls=len(calls),
        calls_per_second=round(len(calls) / span, 3) if span > 0 else 0.0,
        error_rate=round(errors / len(calls), 4) if calls else 0.0,
        p95_ms=latencies[math.ceil(0.95 * len(latencies)) - 1] if latencies else None,
    )


def _timestamp(entry: Entry) -> float:
    try:
        return datetime.fromisoformat(str(entry["time"])).timestamp()
    except (KeyError, ValueError):
        return 0.0
