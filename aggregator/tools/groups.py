"""Group management tools: safe edits of scopes.yml (mcp-gateway-registry's group tool names).

In mcp-gateway-registry's vocabulary a "scopes group" is a scope key of scopes.yml (a list of
server rules); `group_mappings` map IdP groups to them. Every edit takes the file lock, rewrites
the whole file atomically, and reloads the policy at once; a result that does not validate is
refused and the file is left as it was.

Who may do what (the UI permissions are checked against scopes.yml as it is under the lock):

* `add_server_to_scopes_groups` / `remove_server_from_scopes_groups` for server X need
  `modify_service` for X: granting or withdrawing access to X is modifying X;
* `create_group` and `delete_group` change `group_mappings`, so they need `modify_service` for
  `all`; an existing name is refused unless `overwrite: true`, and overwriting also needs
  `modify_service` for every server the existing group (or the IdP group of that name) reaches;
  a UI-Scopes role name is refused (mapping an IdP group to it would hand out admin permissions);
* `list_groups` shows only the rules for servers the caller may list (all of them with
  `list_service` for `all`), and the IdP groups mapped to the scopes it shows;
* no edit may widen the caller's own access: the edited file is compared with the current one
  for the caller (`Policy.gained`), so adding a server to a group the caller holds is refused
  unless the caller already holds everything the new rule grants.
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
from aggregator.policy.scopes import Policy, ScopesFile, load_scopes
from aggregator.registry.models import SERVER_NAME_PATTERN
from aggregator.tools.base import ALL, AdminTool, Arguments, NoArguments, require

_RESERVED = frozenset({"group_mappings", "UI-Scopes"})
_GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
Edit = Callable[[dict[str, Any], Policy], None]
"""Changes the raw scopes.yml data in place; gets the policy of the file as it is (under the lock)."""


class GroupName(Arguments):
    group_name: str = Field(pattern=_GROUP_PATTERN, description="The scopes group (a scope key of scopes.yml).")


class CreateGroup(GroupName):
    description: str = Field(default="", description="Kept as a comment-free note in the audit log only.")
    overwrite: bool = Field(default=False, description="Replace an existing group of that name with an empty one.")


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
    """Edits scopes.yml on behalf of a principal, within its UI permissions."""

    def __init__(self, policy: PolicyHolder, on_change: Callable[[], None]) -> None:
        self._policy = policy
        self._on_change = on_change

    def tools(self) -> list[AdminTool]:
        return [
            AdminTool(
                "list_groups",
                "List the scopes groups and the IdP groups mapped to them (the rules of servers you may list).",
                NoArguments,
                "list_service",
                self._list,
            ),
            AdminTool(
                "create_group",
                "Create an empty scopes group (and map the IdP group of the same name). "
                "Needs modify_service for all servers.",
                CreateGroup,
                "modify_service",
                self._create,
            ),
            AdminTool(
                "delete_group",
                "Delete a scopes group and its mappings. Needs modify_service for all servers.",
                GroupName,
                "modify_service",
                self._delete,
            ),
            AdminTool(
                "add_server_to_scopes_groups",
                "Allow a server's tools in scopes groups. Needs modify_service for that server.",
                AddServer,
                "modify_service",
                self._add_server,
            ),
            AdminTool(
                "remove_server_from_scopes_groups",
                "Remove a server from scopes groups. Needs modify_service for that server.",
                ServerGroups,
                "modify_service",
                self._remove_server,
            ),
        ]

    async def _list(self, principal: Principal, arguments: NoArguments) -> dict[str, Any]:
        policy = self._policy.current
        scopes = policy.file
        if policy.may_administer(principal, "list_service", ALL):
            return {
                "groups": {name: list(mapped) for name, mapped in scopes.group_mappings.items()},
                "scopes": {name: [rule.model_dump() for rule in rules] for name, rules in scopes.scopes.items()},
                "complete": True,
            }
        shown = {
            name: [rule.model_dump() for rule in rules if _may_list(policy, principal, rule.server)]
            for name, rules in scopes.scopes.items()
        }
        shown = {name: rules for name, rules in shown.items() if rules}
        groups = {name: [scope for scope in mapped if scope in shown] for name, mapped in scopes.group_mappings.items()}
        return {
            "groups": {name: mapped for name, mapped in groups.items() if mapped},
            "scopes": shown,
            "complete": False,
            "note": "Only the rules of servers you may list (list_service) are shown.",
        }

    async def _create(self, principal: Principal, arguments: CreateGroup) -> dict[str, Any]:
        name = arguments.group_name
        overwritten = False

        def create(data: dict[str, Any], before: Policy) -> None:
            nonlocal overwritten
            require(before, principal, "modify_service", ALL, "create_group (it changes group_mappings)")
            if name in _RESERVED:
                raise AccessDeniedError(f"'{name}' is a reserved key of scopes.yml, not a group name.")
            if name in before.file.ui_scopes:
                raise AccessDeniedError(
                    f"'{name}' is a UI-Scopes role: mapping the IdP group '{name}' to it would hand out its admin "
                    "permissions. UI-Scopes is changed by editing scopes.yml."
                )
            mappings = _mappings(data)
            if name in data or name in mappings:
                if not arguments.overwrite:
                    raise AccessDeniedError(
                        f"The scopes group '{name}' already exists. Pass overwrite: true to replace it with an "
                        "empty group (its rules and its IdP group mapping are dropped)."
                    )
                for server in sorted(_reach(before.file, name)):
                    target = ALL if "*" in server else server
                    require(
                        before, principal, "modify_service", target, f"Overwriting '{name}' (it reaches '{server}')"
                    )
                overwritten = True
            data[name] = []
            mappings[name] = [name]

        await self._edit(principal, create)
        return {"created": name, "overwritten": overwritten}

    async def _delete(self, principal: Principal, arguments: GroupName) -> dict[str, Any]:
        name = arguments.group_name

        def delete(data: dict[str, Any], before: Policy) -> None:
            require(before, principal, "modify_service", ALL, "delete_group (it changes group_mappings)")
            _known_group(data, name)
            del data[name]
            mappings = _mappings(data)
            for group in list(mappings):
                kept = [scope for scope in mappings[group] or [] if scope != name]
                if kept:
                    mappings[group] = kept
                else:
                    del mappings[group]

        await self._edit(principal, delete)
        return {"deleted": name}

    async def _add_server(self, principal: Principal, arguments: AddServer) -> dict[str, Any]:
        server = arguments.server_name
        rule = {"server": server, "methods": arguments.methods, "tools": arguments.tools}

        def add(data: dict[str, Any], before: Policy) -> None:
            require(before, principal, "modify_service", server, "add_server_to_scopes_groups")
            for group in arguments.group_names:
                _known_group(data, group)
                rules = [r for r in (data[group] or []) if r.get("server") != server]
                data[group] = [*rules, rule]

        await self._edit(principal, add)
        return {"server": server, "added_to": arguments.group_names}

    async def _remove_server(self, principal: Principal, arguments: ServerGroups) -> dict[str, Any]:
        server = arguments.server_name

        def remove(data: dict[str, Any], before: Policy) -> None:
            require(before, principal, "modify_service", server, "remove_server_from_scopes_groups")
            for group in arguments.group_names:
                _known_group(data, group)
                data[group] = [r for r in (data[group] or []) if r.get("server") != server]

        await self._edit(principal, remove)
        return {"server": server, "removed_from": arguments.group_names}

    async def _edit(self, principal: Principal, edit: Edit) -> None:
        path = self._policy.path
        if path is None:
            raise ConfigError([ConfigIssue("<settings>", "scopes_file", "no scopes.yml is configured")])
        await anyio.to_thread.run_sync(_edit_file, path, principal, edit)
        self._policy.reload_if_changed()
        self._on_change()


def _edit_file(path: Path, principal: Principal, edit: Edit) -> None:
    with locked(path):
        before = Policy(load_scopes(path))
        data = read_yaml(path).data or {}
        edit(data, before)
        text = yaml.safe_dump(data, sort_keys=False)
        staging = path.with_name(f".{path.name}.check")
        staging.write_text(text, encoding="utf-8")
        try:
            after = Policy(load_scopes(staging))  # refuse anything the policy loader would refuse
        finally:
            staging.unlink(missing_ok=True)
        if (gained := before.gained(principal, after)) is not None:
            raise AccessDeniedError(
                f"This change would give you {gained}, which you do not hold now; no caller may widen its own "
                "access (someone else with the permission has to make it)."
            )
        write_atomically(path, text)


def _mappings(data: dict[str, Any]) -> dict[str, Any]:
    mappings = data.get("group_mappings") or {}
    data["group_mappings"] = mappings
    return mappings  # type: ignore[no-any-return]


def _reach(scopes: ScopesFile, name: str) -> set[str]:
    """The servers (or server patterns) a group's rules and the IdP group of the same name reach."""
    names = {name, *scopes.group_mappings.get(name, ())}
    return {rule.server for scope in names for rule in scopes.scopes.get(scope, ())}


def _may_list(policy: Policy, principal: Principal, server: str) -> bool:
    target = ALL if "*" in server else server  # a pattern concerns servers not known yet: only `all` lists it
    return policy.may_administer(principal, "list_service", target)


def _known_group(data: dict[str, Any], group: str) -> None:
    if group in _RESERVED or group not in data:
        raise UnknownNameError("scopes group", group, [])
