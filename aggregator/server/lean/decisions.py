"""Policy decisions on tool calls, memoised so that a call costs a dictionary lookup.

A decision depends only on the policy in force and on who asks: `Policy.allows` reads the
principal's own scopes, the scopes its groups map to, and whether it is unrestricted. So the
cache key is (those, server, tool), and the whole cache is dropped whenever the policy object
changes (every scopes.yml reload makes a new one) or the revocation list's file changes.
"""

from __future__ import annotations

from pathlib import Path

from aggregator.config.files import stamp
from aggregator.policy.principal import Principal
from aggregator.policy.reload import PolicyHolder
from aggregator.policy.scopes import Policy

_Key = tuple[bool, frozenset[str], frozenset[str], str, str]

MAX_DECISIONS = 65_536
"""Entries kept before the cache starts over (bounded memory, whatever callers send)."""


class DecisionCache:
    """`Policy.allows(principal, server, "tools/call", tool)`, memoised per policy version."""

    def __init__(self, policy: PolicyHolder, revocations: Path | None = None) -> None:
        self._holder = policy
        self._revocations = revocations
        self._policy: Policy | None = None
        self._revoked: tuple[int, int] | None = None
        self._decisions: dict[_Key, bool] = {}

    def allows(self, principal: Principal, server: str, tool: str) -> bool:
        """Whether `principal` may call `tool` of `server` under the policy in force now."""
        self._refresh()
        key = (principal.unrestricted, principal.scopes, principal.groups, server, tool)
        decision = self._decisions.get(key)
        if decision is None:
            assert self._policy is not None
            decision = self._policy.allows(principal, server, "tools/call", tool)
            if len(self._decisions) >= MAX_DECISIONS:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def _refresh(self) -> None:
        policy = self._holder.current
        revoked = stamp(self._revocations) if self._revocations is not None else None
        if policy is not self._policy or revoked != self._revoked:
            self._decisions.clear()
            self._policy, self._revoked = policy, revoked

    def __len__(self) -> int:
        return len(self._decisions)
