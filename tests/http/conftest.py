"""What the HTTP edge's tests share: the policy their gateways enforce and tokens for its groups."""

from __future__ import annotations

from collections.abc import Sequence

from tests.harness import token_for

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


def token(groups: Sequence[str]) -> str:
    """A token for a member of `groups`, named after them (`user-admins`, `user-none`)."""
    return token_for(f"user-{'-'.join(groups) or 'none'}", groups=groups)
