"""The shape of one admin tool (arguments model, UI permission, what it does) and the permission check.

What each UI permission (`UI-Scopes` in scopes.yml) allows. Permissions are granted per server;
`all` grants them for every server, including servers registered later. A tool is listed (and
callable) when scopes.yml lets the caller call it on the gateway's server (`mcpgw`) and the caller
holds its permission for at least one server; every call then checks the permission for the
object it touches, against the scopes.yml it is about to change where it changes scopes.yml.

    permission            for server X                                     for `all` (in addition)
    list_service          see X in list_services, healthcheck,              recent_activity (the audit log),
                          gateway://health; X's rules in list_groups        /metrics, every rule in list_groups
    register_service      register a server named X                        -
    toggle_service        enable or disable X (toggle_service)              -
    health_check_service  re-list X now (refresh_service)                   -
    modify_service        remove X (remove_service); grant or withdraw      create_group, delete_group
                          X's tools in scopes groups                        (they change group_mappings)
                          (add_server_to_scopes_groups, remove_...)

`generate_token` needs no UI permission: it mints for the caller a token with a subset of the
caller's own scopes, bound to the caller's token (see `aggregator.policy.vending`). No edit may
widen the caller's own access (`Policy.gained`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import mcp_types as types
from pydantic import BaseModel, ConfigDict

from aggregator.errors import AccessDeniedError
from aggregator.policy.principal import Principal
from aggregator.policy.scopes import Policy

Permission = Literal["list_service", "register_service", "toggle_service", "modify_service", "health_check_service"]
ALL = "all"
"""The UI-Scopes server entry that stands for every server."""


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArguments(Arguments):
    pass


@dataclass(frozen=True, slots=True)
class AdminTool:
    """One management tool: its arguments model, the UI permission it needs, and what it does."""

    name: str
    description: str
    arguments: type[Arguments]
    permission: Permission | None
    run: Callable[[Principal, Any], Awaitable[Any]]

    def tool(self) -> types.Tool:
        """The MCP tool callers see (built once: `tools/list` asks for it on every request)."""
        return _tool(self.name, self.description, self.arguments, self.permission in (None, "list_service"))


def require(policy: Policy, principal: Principal, permission: Permission, server: str, action: str) -> None:
    """Raise `AccessDeniedError` naming `action`, the permission and the server unless it is granted.

    `server` is a server name or `ALL`; asking for `ALL` needs the permission for `all` itself.
    """
    if not policy.may_administer(principal, permission, server):
        where = "all servers" if server == ALL else f"server '{server}'"
        raise AccessDeniedError(f"{action} needs the {permission} permission for {where}.")


@functools.cache
def _tool(name: str, description: str, arguments: type[Arguments], read_only: bool) -> types.Tool:
    schema = arguments.model_json_schema()
    schema.pop("title", None)
    return types.Tool(
        name=name,
        description=description,
        input_schema=schema,
        annotations=types.ToolAnnotations(read_only_hint=read_only),
    )
