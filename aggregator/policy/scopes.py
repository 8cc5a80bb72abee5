"""scopes.yml (the mcp-gateway-registry format, unchanged) and the one decision function built on it.

    group_mappings:            IdP group -> scopes
      platform-team: [mcp-servers-unrestricted/read, mcp-servers-unrestricted/execute]
    UI-Scopes:                 scope -> admin permission -> servers (or `all`)
      mcp-registry-admin: {list_service: [all], toggle_service: [all], ...}
    mcp-servers-restricted/read:   any other top-level key is a scope: a list of server rules
      - server: weather            server name (`*` wildcards allowed)
        methods: [tools/list, tools/call]
        tools: [get_forecast, "list_*"]

A principal's scopes are its token's scopes plus the scopes its groups map to. It may use a
method of a server when one of its scopes has a rule for that server naming the method; for
tool methods, the rule must also name the tool. Nothing else is allowed: deny by default.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aggregator.config.yamlfile import read_yaml
from aggregator.errors import ConfigError, ConfigIssue
from aggregator.policy.principal import Principal

ADMIN_PERMISSIONS = frozenset(
    {"list_service", "register_service", "toggle_service", "modify_service", "health_check_service"}
)


class ServerRule(BaseModel):
    """What one scope allows on one server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: str = Field(min_length=1)
    methods: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()


class ScopesFile(BaseModel):
    """The parsed scopes.yml."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    group_mappings: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    ui_scopes: dict[str, dict[str, tuple[str, ...]]] = Field(default_factory=dict, alias="UI-Scopes")
    scopes: dict[str, tuple[ServerRule, ...]] = Field(default_factory=dict)


def load_scopes(path: Path) -> ScopesFile:
    """Read scopes.yml; every problem is reported with its file, path, line and reason."""
    document = read_yaml(path)
    data = document.data if document.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(str(path), "", "expected a mapping at the top level", 1)])
    reserved = {"group_mappings", "UI-Scopes"}
    shaped = {key: value for key, value in data.items() if key in reserved}
    shaped["scopes"] = {key: value or [] for key, value in data.items() if key not in reserved}
    try:
        return ScopesFile.model_validate(shaped)
    except ValidationError as error:
        issues = []
        for item in error.errors():
            location = tuple(str(part) for part in item["loc"])
            if location[:1] == ("scopes",):
                location = location[1:]
            issues.append(ConfigIssue(str(path), ".".join(location), item["msg"], document.line_of(location)))
        raise ConfigError(issues) from None


@dataclass(frozen=True, slots=True)
class _Grant:
    scope: str
    server: str
    methods: tuple[str, ...]
    tools: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Request:
    """What a caller asks to do: `method` of `server`, on `tool` (its upstream name) for tool methods."""

    server: str
    method: str
    tool: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer to one `Request`: allowed or not, and why (the granting scope, or what is missing)."""

    allowed: bool
    reason: str


MAX_DECISIONS = 65_536
"""Decisions one policy remembers before it starts over (bounded memory, whatever callers send)."""


class Policy:
    """Answers "may this principal use this method (and tool) of this server?" and admin questions."""

    def __init__(self, scopes: ScopesFile) -> None:
        self.file = scopes
        self._grants_for = lru_cache(maxsize=1024)(self._compile)
        self._decisions: dict[tuple[frozenset[str], Request], Decision] = {}

    def scopes_of(self, principal: Principal) -> frozenset[str]:
        """The token's scopes plus the scopes of every group it is in."""
        mapped = (scope for group in principal.groups for scope in self.file.group_mappings.get(group, ()))
        return principal.scopes | frozenset(mapped)

    def check_call(self, principal: Principal, request: Request) -> Decision:
        """The one decision function: may `principal` do `request`? Deny unless a rule of its scopes says so.

        Lists, calls, resources, prompts, completions, the finder, the admin tools and nginx's
        `/auth/validate` all ask here. A decision depends only on the principal's scopes, so it is
        remembered per (scopes, request) for the life of this policy; a reloaded scopes.yml is a
        new `Policy`, with nothing remembered.
        """
        if principal.unrestricted:
            return _UNRESTRICTED
        scopes = self.scopes_of(principal)
        key = (scopes, request)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decide(scopes, request)
            if len(self._decisions) >= MAX_DECISIONS:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def allows(self, principal: Principal, server: str, method: str, tool: str | None = None) -> bool:
        """Whether `principal` may call `method` (on `tool`, for tool methods) of `server` (`check_call`)."""
        return self.check_call(principal, Request(server, method, tool)).allowed

    def _decide(self, scopes: frozenset[str], request: Request) -> Decision:
        for grant in self._grants_for(scopes):
            if not _matches(request.server, (grant.server,)) or not _matches(request.method, grant.methods):
                continue
            if request.tool is None or _matches(request.tool, grant.tools):
                return Decision(True, f"granted by scope '{grant.scope}'")
        what = f"{request.method} of tool '{request.tool}'" if request.tool is not None else request.method
        return Decision(False, f"no scope of the caller grants {what} on server '{request.server}'")

    def may_administer(self, principal: Principal, permission: str, server: str | None = None) -> bool:
        """Whether a UI-Scopes `permission` is granted, for `server` (or for any server when None)."""
        if principal.unrestricted:
            return True
        for scope in self.scopes_of(principal):
            servers = self.file.ui_scopes.get(scope, {}).get(permission, ())
            if "all" in servers or (server is None and servers) or (server is not None and server in servers):
                return True
        return False

    def gained(self, principal: Principal, after: Policy) -> str | None:
        """Something `principal` could do under `after` but not under this policy, or None.

        Compares everything access is made of: the method/tool rules of its scopes and the UI
        permissions of its scopes, server by server. Patterns are compared conservatively: a new
        pattern counts as already held only when an identical or covering pattern is held (`*`
        covers everything; a pattern covers a plain name it matches).
        """
        if principal.unrestricted:
            return None
        for scope in sorted(after.scopes_of(principal)):
            for permission, servers in after.file.ui_scopes.get(scope, {}).items():
                for server in servers:
                    if not self.may_administer(principal, permission, server):
                        where = "all servers" if server == "all" else f"server '{server}'"
                        return f"the {permission} permission for {where}"
        held = self._grants_for(self.scopes_of(principal))
        for grant in after._grants_for(after.scopes_of(principal)):
            if not any(_covers(old.server, grant.server) for old in held):
                return f"access to server '{grant.server}'"  # any rule reaches the server (passthrough streams)
            for method in grant.methods:
                for tool in grant.tools or (None,):
                    if not any(_held(old, grant.server, method, tool) for old in held):
                        what = f"{method} of tool '{tool}'" if tool is not None else method
                        return f"{what} on server '{grant.server}'"
        return None

    def _compile(self, scopes: frozenset[str]) -> tuple[_Grant, ...]:
        return tuple(
            _Grant(scope, rule.server, rule.methods, rule.tools)
            for scope in sorted(scopes)
            for rule in self.file.scopes.get(scope, ())
        )


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(pattern == value or ("*" in pattern and fnmatch.fnmatchcase(value, pattern)) for pattern in patterns)


def _covers(pattern: str, value: str) -> bool:
    """Whether `pattern` matches everything `value` (a name or itself a pattern) matches."""
    return pattern in ("*", value) or ("*" in pattern and "*" not in value and fnmatch.fnmatchcase(value, pattern))


def _held(grant: _Grant, server: str, method: str, tool: str | None) -> bool:
    if not _covers(grant.server, server) or not any(_covers(held, method) for held in grant.methods):
        return False
    return tool is None or any(_covers(held, tool) for held in grant.tools)


_UNRESTRICTED = Decision(True, "the caller is unrestricted (--insecure-dev)")


def empty_policy() -> Policy:
    """Deny everything (no scopes.yml configured)."""
    return Policy(ScopesFile())


def describe(scopes: ScopesFile) -> dict[str, Any]:
    """Counts for logs: how many groups, scopes and rules the file holds."""
    return {
        "groups": len(scopes.group_mappings),
        "scopes": len(scopes.scopes),
        "rules": sum(len(rules) for rules in scopes.scopes.values()),
    }
