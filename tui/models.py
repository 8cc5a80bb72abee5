"""What the console knows about the gateway: typed views of the admin tools' JSON answers.

Everything here is immutable and parsed once, at the client edge (`client.py`); widgets receive
these objects as attributes and never see raw JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import mcp_types as types

TOGGLE = "toggle_service"
REFRESH = "refresh_service"
REMOVE = "remove_service"
REGISTER = "register_service"
LIST = "list_services"
ACTIVITY = "recent_activity"
FINDER = "intelligent_tool_finder"
HELD = "list_held_tools"
APPROVE = "approve_tool"
REJECT = "reject_tool"
HEALTH_URI = "gateway://health"
UNKNOWN = "unknown"
"""A server's state while the console cannot reach the gateway: it may have changed since."""


class Filter(StrEnum):
    """Which servers the table shows."""

    ALL = "all"
    ENABLED = "enabled"
    DISABLED = "disabled"
    ISSUES = "issues"


@dataclass(frozen=True, slots=True)
class Service:
    """One registered server as `list_services` describes it."""

    name: str
    transport: str
    enabled: bool
    state: str
    era: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    tools: int = 0
    resources: int = 0
    prompts: int = 0
    latency_ms: float | None = None
    last_check: float | None = None
    last_error: str | None = None
    recent_stderr: tuple[str, ...] = ()
    """A stdio server's latest stderr lines (the gateway keeps the last few, masked)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Service:
        return cls(
            name=str(data["name"]),
            transport=str(data.get("transport", "")),
            enabled=bool(data.get("enabled", True)),
            state=str(data.get("state", "")),
            era=data.get("era"),
            description=str(data.get("description") or ""),
            tags=tuple(str(tag) for tag in data.get("tags") or ()),
            tools=int(data.get("tools") or 0),
            resources=int(data.get("resources") or 0),
            prompts=int(data.get("prompts") or 0),
            latency_ms=_number(data.get("latency_ms")),
            last_check=_number(data.get("last_check")),
            last_error=data.get("last_error") or None,
            recent_stderr=tuple(str(line) for line in data.get("recent_stderr") or ()),
        )

    @property
    def has_issue(self) -> bool:
        """Enabled but not serving well (or not yet): what an operator should look at."""
        return self.enabled and self.state != "healthy"

    def matches(self, which: Filter) -> bool:
        return (
            which is Filter.ALL
            or (which is Filter.ENABLED and self.enabled)
            or (which is Filter.DISABLED and not self.enabled)
            or (which is Filter.ISSUES and self.has_issue)
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the gateway's audit log."""

    time: str
    principal: str
    method: str
    name: str | None
    decision: str
    outcome: str
    latency_ms: float | None
    client: str = ""
    """The calling program as it introduced itself (`clientInfo`: `name/version`), if it did."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEntry:
        return cls(
            client=str(data.get("client") or ""),
            time=str(data.get("time", "")),
            principal=str(data.get("principal") or ""),
            method=str(data.get("method", "")),
            name=data.get("name"),
            decision=str(data.get("decision", "")),
            outcome=str(data.get("outcome", "")),
            latency_ms=_number(data.get("latency_ms")),
        )


@dataclass(frozen=True, slots=True)
class Headline:
    """Calls, calls per second, error rate and p95 latency over the activity window."""

    calls: int
    calls_per_second: float
    error_rate: float
    p95_ms: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Headline:
        return cls(
            calls=int(data.get("calls") or 0),
            calls_per_second=float(data.get("calls_per_second") or 0.0),
            error_rate=float(data.get("error_rate") or 0.0),
            p95_ms=_number(data.get("p95_ms")),
        )


@dataclass(frozen=True, slots=True)
class Activity:
    """The answer of `recent_activity`."""

    you: str
    entries: tuple[AuditEntry, ...]
    window_seconds: float
    total: Headline
    upstreams: tuple[tuple[str, Headline], ...]
    audit_log: bool = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Activity:
        return cls(
            you=str(data.get("you", "")),
            entries=tuple(AuditEntry.from_json(entry) for entry in data.get("entries") or ()),
            window_seconds=float(data.get("window_seconds") or 60),
            total=Headline.from_json(data.get("total") or {}),
            upstreams=tuple((name, Headline.from_json(item)) for name, item in (data.get("upstreams") or {}).items()),
            audit_log=bool(data.get("audit_log", True)),
        )


@dataclass(frozen=True, slots=True)
class Finding:
    """Why the gateway's description scanner flagged a definition: the rule, where, and an excerpt."""

    rule: str
    reason: str
    place: str
    excerpt: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(
            rule=str(data.get("rule", "")),
            reason=str(data.get("reason", "")),
            place=str(data.get("place", "")),
            excerpt=str(data.get("excerpt", "")),
        )


@dataclass(frozen=True, slots=True)
class HeldTool:
    """A tool definition the gateway holds out of every list and call until an operator decides."""

    server: str
    tool: str
    change: str
    """`new` (never pinned) or `changed` (differs from the pinned definition)."""
    reason: str
    fingerprint: str
    held_since: str
    diff: str
    findings: tuple[Finding, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeldTool:
        return cls(
            server=str(data["server"]),
            tool=str(data["tool"]),
            change=str(data.get("change", "")),
            reason=str(data.get("reason", "")),
            fingerprint=str(data.get("fingerprint", "")),
            held_since=str(data.get("held_since", "")),
            diff=str(data.get("diff") or ""),
            findings=tuple(Finding.from_json(item) for item in data.get("findings") or () if isinstance(item, dict)),
        )

    @property
    def key(self) -> str:
        return f"{self.server}/{self.tool}"


@dataclass(frozen=True, slots=True)
class Abilities:
    """What the operator's token may do: the gateway's own tools that are in its tools/list."""

    tools: frozenset[str] = frozenset()

    def allows(self, tool: str) -> bool:
        return tool in self.tools

    def reason(self, tool: str) -> str | None:
        """Why an action is disabled, or None when it is allowed."""
        if tool in self.tools:
            return None
        return f"this token may not call {tool} (it is not in the token's tools/list)"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One poll of the gateway: its servers, the caller's tools, and (if allowed) the activity and
    the tool definitions held for approval."""

    services: tuple[Service, ...] = ()
    tools: tuple[types.Tool, ...] = ()
    registry_error: str | None = None
    activity: Activity | None = None
    activity_error: str | None = None
    abilities: Abilities = field(default_factory=Abilities)
    held: tuple[HeldTool, ...] = ()
    held_error: str | None = None

    def unknown(self) -> Snapshot:
        """This snapshot as the console shows it while the gateway is out of reach: no state is known."""
        return replace(self, services=tuple(replace(service, state=UNKNOWN) for service in self.services))


@dataclass(frozen=True, slots=True)
class ServerContents:
    """A server's tools, resources, resource templates and prompts, as the gateway exports them."""

    tools: tuple[types.Tool, ...] = ()
    resources: tuple[types.Resource, ...] = ()
    templates: tuple[types.ResourceTemplate, ...] = ()
    prompts: tuple[types.Prompt, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolMatch:
    """One search result: an exported tool, its server, and how well it matched."""

    name: str
    server: str
    description: str
    score: float
    tool: types.Tool | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Matches for a query, and how they were found (the gateway's finder or a local match)."""

    query: str
    matches: tuple[ToolMatch, ...]
    method: str
    note: str | None = None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool called from the console answered: its text, its structured content, whether it failed."""

    tool: str
    is_error: bool
    text: str
    structured: str | None = None
    """The structured content as indented JSON, if the tool gave any."""


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a long operation (refreshing every server) has got."""

    done: int
    total: int
    current: str = ""
