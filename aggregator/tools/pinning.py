"""Admin tools for pinned tool definitions: what is held and why (with a diff), approve, reject.

    tool              permission         for
    list_held_tools   list_service       each server whose held tools are shown
    approve_tool      modify_service     the server whose tool is approved (then served at once)
    reject_tool       modify_service     the server whose tool is rejected (kept out until it changes)

A verdict may name the fingerprint `list_held_tools` showed, so it applies to that definition only.
The same verdicts are available without a running gateway: `mcp-aggregator tools approve|reject|diff`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from aggregator.policy.principal import Principal
from aggregator.policy.reload import PolicyHolder
from aggregator.registry.models import SERVER_NAME_PATTERN
from aggregator.tools.base import AdminTool, Arguments, require
from aggregator.trust.gate import Gate
from aggregator.trust.verdicts import Verdict, held_tools

FINGERPRINT_PATTERN = r"^sha256:[0-9a-f]{64}$"


class HeldFilter(Arguments):
    service_name: str | None = Field(
        default=None, pattern=SERVER_NAME_PATTERN, description="Only this server's held tools (default: all)."
    )


class VerdictRequest(Arguments):
    service_name: str = Field(pattern=SERVER_NAME_PATTERN, description="The server that offers the tool.")
    tool_name: str = Field(min_length=1, max_length=256, description="The tool's name as the server lists it.")
    fingerprint: str | None = Field(
        default=None,
        pattern=FINGERPRINT_PATTERN,
        description="The fingerprint list_held_tools showed: the verdict then applies to that definition only.",
    )


class PinningAdmin:
    """The pinning tools of one gateway, acting on its gate as the calling principal."""

    def __init__(self, gate: Gate, policy: PolicyHolder) -> None:
        self._gate = gate
        self._policy = policy

    def tools(self) -> list[AdminTool]:
        return [
            AdminTool(
                "list_held_tools",
                "Tool definitions held until an operator approves them: why (new, changed, flagged by the "
                "scanner), and a diff of the pinned definition against the offered one.",
                HeldFilter,
                "list_service",
                self._held,
            ),
            AdminTool(
                "approve_tool",
                "Approve a held tool definition: it is pinned and served at once.",
                VerdictRequest,
                "modify_service",
                lambda principal, arguments: self._decide("approved", principal, arguments),
            ),
            AdminTool(
                "reject_tool",
                "Reject a held tool definition: it stays out of every list and call until the server changes it.",
                VerdictRequest,
                "modify_service",
                lambda principal, arguments: self._decide("rejected", principal, arguments),
            ),
        ]

    async def _held(self, principal: Principal, arguments: HeldFilter) -> dict[str, Any]:
        def visible(server: str) -> bool:
            wanted = arguments.service_name in (None, server)
            return wanted and self._policy.current.may_administer(principal, "list_service", server)

        return {"held": held_tools(self._gate.pins(), visible)}

    async def _decide(self, verdict: Verdict, principal: Principal, arguments: VerdictRequest) -> dict[str, Any]:
        action = "Approving a tool definition" if verdict == "approved" else "Rejecting a tool definition"
        require(self._policy.current, principal, "modify_service", arguments.service_name, action)
        return await self._gate.decide(
            verdict, arguments.service_name, arguments.tool_name, principal, arguments.fingerprint
        )


def pinning_health(gate: Gate, visible: Callable[[str], bool]) -> dict[str, Any]:
    """The `pinning` part of gateway://health: held definitions (no diffs) and recent alerts, of visible servers."""
    held = [
        {key: view[key] for key in ("server", "tool", "change", "reason", "fingerprint", "held_since")}
        | {"findings": [finding["rule"] for finding in view["findings"]]}
        for view in held_tools(gate.pins(), visible)
    ]
    alerts = [event.as_json() for event in gate.alerts if visible(event.server)]
    return {"held": held, "alerts": alerts}
