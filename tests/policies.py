"""Policies (scopes.yml texts) that several test modules share."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

ADMIN_SCOPES = """
group_mappings:
  admins: [mcp-registry-admin, everything, weather-only]
  operators: [operator, everything]
  users: [weather-only]
UI-Scopes:
  mcp-registry-admin:
    list_service: [all]
    register_service: [all]
    toggle_service: [all]
    modify_service: [all]
    health_check_service: [all]
  operator:
    list_service: [weather]
    toggle_service: [weather]
everything:
- server: "*"
  methods: [tools/list, tools/call]
  tools: ["*"]
weather-only:
- server: weather
  methods: [tools/call]
  tools: ["*"]
"""
"""A policy with every kind of principal the admin tools know (connect with `LiveGateway.member(group)`):
`admins` may do everything, `operators` may list and toggle `weather` only (and call every tool),
`users` may only call weather's tools."""


def _everything_may(methods: Sequence[str]) -> str:
    policy = yaml.safe_load(ADMIN_SCOPES)
    policy["everything"][0]["methods"] = list(methods)
    return yaml.safe_dump(policy, sort_keys=False)


CONSOLE_SCOPES = _everything_may(
    ("tools/list", "tools/call", "resources/list", "resources/read", "prompts/list", "prompts/get")
)
"""`ADMIN_SCOPES` where `admins` and `operators` may also list and read resources and prompts, as the operator
console (tui) does on a server's screen."""


ADMIN_PERMISSIONS = ("list_service", "register_service", "toggle_service", "modify_service", "health_check_service")


def admins_policy(
    methods: Sequence[str] = ("tools/list", "tools/call"), permissions: Sequence[str] = ADMIN_PERMISSIONS
) -> str:
    """A scopes.yml where members of `admins` hold `permissions` on every server and may use `methods` on
    every tool; nobody else may do anything."""
    return yaml.safe_dump(
        {
            "group_mappings": {"admins": ["mcp-registry-admin", "everything"]},
            "UI-Scopes": {"mcp-registry-admin": {permission: ["all"] for permission in permissions}},
            "everything": [{"server": "*", "methods": list(methods), "tools": ["*"]}],
        },
        sort_keys=False,
    )


USERS_MAY_DO_EVERYTHING = """
group_mappings:
  users: [everything]
everything:
- server: "*"
  methods: ["*"]
  tools: ["*"]
"""
"""A scopes.yml where members of `users` may use every method on every tool (and have no UI permission)."""
