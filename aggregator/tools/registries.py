"""The followed registries' admin tools, and the `Federation` a gateway follows them with.

    list_registries     each followed registry's state, last error, followed and available servers
                        (needs list_service for all: registries are the whole gateway's)
    refresh_registry    read one registry (or every one) now and apply what it gives
                        (needs health_check_service for all)
    list_services       as before, plus `available` (package-only servers the caller may list) and,
    healthcheck         for a caller with list_service for all, `registries` (their health)

Each tool runs as the caller and is permission-checked like the other admin tools (`tools.base`).
A caller names at most a registry: nothing it sends becomes configuration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx2
from pydantic import Field

from aggregator.config.settings import Settings
from aggregator.policy.addresses import AddressPolicy
from aggregator.policy.principal import Principal
from aggregator.policy.reload import PolicyHolder
from aggregator.registry.federation import Federation
from aggregator.registry.federation_answer import Followed
from aggregator.registry.federation_fetch import RegistryReader
from aggregator.registry.models import SERVER_NAME_PATTERN, ServersFile
from aggregator.tools.base import ALL, AdminTool, Arguments, NoArguments, require
from aggregator.tools.checks import check_url
from aggregator.upstreams.credentials import UpstreamAuth


class RefreshRegistry(Arguments):
    registry: str | None = Field(
        default=None, pattern=SERVER_NAME_PATTERN, description="The followed registry's name (default: every one)."
    )


def follow(
    settings: Settings,
    configured: Callable[[], ServersFile],
    apply: Callable[[ServersFile], Awaitable[None]],
    scopes_of: Callable[[Principal], frozenset[str]],
) -> Federation:
    """The gateway's `Federation`: registries read with their own credential; every published URL checked as
    `register_service` checks a caller's (and again on every connection, as for a registered server)."""
    addresses = AddressPolicy.from_settings(settings)

    def auth_for(name: str, registry: Followed) -> httpx2.Auth | None:
        return None if registry.auth is None else UpstreamAuth(f"registry:{name}", registry.auth, (), scopes_of)

    return Federation(configured, RegistryReader(auth_for), lambda url: check_url(url, addresses), apply)


class RegistriesAdmin:
    """The admin tools of the registries a gateway follows."""

    def __init__(self, federation: Federation, policy: PolicyHolder) -> None:
        self._federation = federation
        self._policy = policy

    def tools(self, existing: Mapping[str, AdminTool]) -> list[AdminTool]:
        """The new tools, and `list_services` and `healthcheck` of `existing` extended with followed registries."""
        return [
            AdminTool(
                "list_registries",
                "List the registries this gateway follows: state, last error, followed and available servers.",
                NoArguments,
                "list_service",
                self._list,
            ),
            AdminTool(
                "refresh_registry",
                "Read a followed registry (or every one) now and apply what it publishes.",
                RefreshRegistry,
                "health_check_service",
                self._refresh,
            ),
            *(self._extended(existing[name]) for name in ("list_services", "healthcheck") if name in existing),
        ]

    async def _list(self, principal: Principal, arguments: NoArguments) -> dict[str, Any]:
        require(self._policy.current, principal, "list_service", ALL, "Listing the followed registries")
        return {"registries": [status.as_dict() for status in self._federation.statuses()]}

    async def _refresh(self, principal: Principal, arguments: RefreshRegistry) -> dict[str, Any]:
        require(self._policy.current, principal, "health_check_service", ALL, "Refreshing a followed registry")
        names = None if arguments.registry is None else [arguments.registry]
        return {"registries": [status.as_dict() for status in await self._federation.refresh(names)]}

    def _extended(self, tool: AdminTool) -> AdminTool:
        async def run(principal: Principal, arguments: Any) -> Any:
            result = await tool.run(principal, arguments)
            if not isinstance(result, dict):
                return result
            policy = self._policy.current
            result["available"] = [
                {
                    "name": server.name,
                    "state": "available",
                    "registry": server.registry,
                    "published_as": server.published_as,
                    "version": server.version,
                    "description": server.description,
                    "packages": [package.model_dump(exclude_none=True) for package in server.packages],
                }
                for server in self._federation.available()
                if policy.may_administer(principal, "list_service", server.name)
            ]
            if policy.may_administer(principal, "list_service", ALL):
                result["registries"] = [
                    {key: value for key, value in status.as_dict().items() if key in _HEALTH}
                    for status in self._federation.statuses()
                ]
            return result

        return AdminTool(tool.name, tool.description, tool.arguments, tool.permission, run)


_HEALTH = frozenset({"name", "url", "state", "last_success", "last_error"})
