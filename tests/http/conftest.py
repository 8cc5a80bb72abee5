"""What the HTTP edge's tests share: the policy their gateways enforce (tokens: `member_token`)."""

from __future__ import annotations

SCOPES = """
group_mappings:
  admins: [registry-admin, everything]
  weather-users: [weather-forecast]
  echo-operators: [echo-ops]
  strangers: []
UI-Scopes:
  registry-admin:
    list_service: [all]
  echo-ops:
    list_service: [echo]
everything:
- server: "*"
  methods: [tools/list, tools/call]
  tools: ["*"]
weather-forecast:
- server: weather
  methods: [tools/list, tools/call]
  tools: [get_forecast]
"""
