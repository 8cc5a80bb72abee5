"""Group management tools: safe edits of scopes.yml (mcp-gateway-registry's group tool names).

In mcp-gateway-registry's vocabulary a "scopes group" is a scope key of scopes.yml (a list of
server rules); `group_mappings` map IdP groups to them. Every edit takes the file lock, rewrites
the whole file atomically, and reloads the policy at once; a result that does not validate is
refused and the file is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import yaml
from pydantic import Field

from aggregator.config.files import locked, write_atomically
from aggregator.config.yamlfile import read_yaml
from aggregator.errors import AccessDeniedError, ConfigError, ConfigIssue, UnknownNameError
from aggregator.policy.principal import Principal
from aggregator.policy.reload import PolicyHolder
from aggregator.policy.scopes import load_scopes
from aggregator.registry.models import SERVER_NAME_PATTERN
from aggregator.tools.base import AdminTool, Arguments, NoArguments

_RESERVED = frozenset({"group_mappings", "UI-Scopes"})
_GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


class GroupName(Arguments):
    group_name: str = Field(pattern=_GROUP_PATTERN, description="The scopes group (a scope key of scopes.yml).")


class CreateGroup(GroupName):
    description: str = Field(default="", description="Kept as a comment-free note in the audit log only.")


class ServerGroups(Arguments):
    server_name: str = Field(pattern=SERVER_NAME_PATTERN, description="A registered server's name.")
    group_names: list[str] = Field(min_length=1, description="Scopes groups to change.")


class AddServer(ServerGroups):
    tools: list[str] = Field(default_factory=lambda: ["*"], description="Tools to allow (`*` wildcards).")
    methods: list[str] = Field(
        default_factory=lambda: [
            "initialize",
            "tools/list",
            "tools/call",
            "resources/list",
            "resources/read",
            "prompts/list",
            "prompts/get",
        ],
        description="Methods to allow.",
    )


class GroupAdmin:
    """Edits scopes.yml on behalf of principals with `modify_service` for all servers."""

    def __init__(self, policy: PolicyHolder, on_change: Callable[[], None]) -> None:
        self._policy = policy
        self._on_change = on_change

    def tools(self) -> list[AdminTool]:
        return [
            AdminTool(
                "list_groups",
                "List the scopes groups and the IdP groups mapped to them.",
                NoArguments,
                "list_service",
                self._list,
            ),
            AdminTool(
                "create_group",
                "Create an empty scopes group (and map the IdP group of the same name).",
                CreateGroup,
                "modify_service",
                self._create,
            ),
            AdminTool(
                "delete_group", "Delete a scopes group and its mappings.", GroupName, "modify_service", self._delete
            ),
            AdminTool(
                "add_server_to_scopes_groups",
                "Allow a server's tools in scopes groups.",
                AddServer,
                "modify_service",
                self._add_server,
            ),
            AdminTool(
                "remove_server_from_scopes_groups",
                "Remove a server from scopes groups.",
                ServerGroups,
                "modify_service",
                self._remove_server,
            ),
        ]

    async def _list(self, principal: Principal, arguments: NoArguments) -> dict[str, Any]:
        scopes = self._policy.current.file
        return {
            "groups": {name: list(mapped) for name, mapped in scopes.group_mappings.items()},
            "scopes": {name: [rule.model_dump() for rule in rules] for name, rules in scopes.scopes.items()},
        }

    async def _create(self, principal: Principal, arguments: CreateGroup) -> dict[str, Any]:
        def create(data: dict[str, Any]) -> None:
            if arguments.group_name in data or arguments.group_name in _RESERVED:
                raise AccessDeniedError(f"The scopes group '{arguments.group_name}' already exists.")
            data[arguments.group_name] = []
            data.setdefault("group_mappings", {})[arguments.group_name] = [arguments.group_name]

        await self._edit(create)
        return {"created": arguments.group_name}

    async def _delete(self, principal: Principal, arguments: GroupName) -> dict[str, Any]:
        def delete(data: dict[str, Any]) -> None:
            _known_group(data, arguments.group_name)
            del data[arguments.group_name]
            mappings = data.get("group_mappings") or {}
            mappings.pop(arguments.group_name, None)
            for group, scopes in mappings.items():
                mappings[group] = [scope for scope in scopes if scope != arguments.group_name]

        await self._edit(delete)
        return {"deleted": arguments.group_name}

    async def _add_server(self, principal: Principal, arguments: AddServer) -> dict[str, Any]:
        rule = {"server": arguments.server_name, "methods": arguments.methods, "tools": arguments.tools}

        def add(data: dict[str, Any]) -> None:
            for group in arguments.group_names:
                _known_group(data, group)
                rules = [r for r in (data[group] or []) if r.get("server") != arguments.server_name]
                data[group] = [*rules, rule]

        await self._edit(add)
        return {"server": arguments.server_name, "added_to": arguments.group_names}

    async def _remove_server(self, principal: Principal, arguments: ServerGroups) -> dict[str, Any]:
        def remove(data: dict[str, Any]) -> None:
            for group in arguments.group_names:
                _known_group(data, group)
                data[group] = [r for r in (data[group] or []) if r.get("server") != arguments.server_name]

        await self._edit(remove)
        return {"server": arguments.server_name, "removed_from": arguments.group_names}

    async def _edit(self, edit: Callable[[dict[str, Any]], None]) -> None:
        path = self._policy.path
        if path is None:
            raise ConfigError([ConfigIssue("<settings>", "scopes_file", "no scopes.yml is configured")])
        await anyio.to_thread.run_sync(_edit_file, path, edit)
        self._policy.reload_if_changed()
        self._on_change()


def _edit_file(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    with locked(path):
        data = read_yaml(path).data or {}
        edit(data)
        text = yaml.safe_dump(data, sort_keys=False)
        staging = path.with_name(f".{path.name}.check")
        staging.write_text(text, encoding="utf-8")
        try:
            load_scopes(staging)  # refuse anything the policy loader would refuse
        finally:
            staging.unlink(missing_ok=True)
        write_atomically(path, text)


def _known_group(data: dict[str, Any], group: str) -> None:
    if group in _RESERVED or group not in data:
        raise UnknownNameError("scopes group", group, [])
