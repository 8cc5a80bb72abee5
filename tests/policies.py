"""Policies (scopes.yml texts) that several test modules share."""

from __future__ import annotations

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
