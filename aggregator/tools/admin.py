"""The gateway's own management tools, with mcp-gateway-registry's names.

Each tool runs as the calling principal, never as a shared admin: it is visible (and callable)
only when scopes.yml lets the principal call it on the gateway's server (`mcpgw`) AND, for
actions on servers, when `UI-Scopes` grants the matching permission for that server. Every call
is audited like any other (`aggregator.server.edge`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import mcp_types as types
from pydantic import Field, ValidationError

from aggregator.catalog.catalog import Catalog
from aggregator.config.settings import Settings
from aggregator.errors import AccessDeniedError, UnknownNameError
from aggregator.policy.addresses import AddressPolicy
from aggregator.policy.audit import AuditLog
from aggregator.policy.principal import Principal
from aggregator.policy.ratelimit import RateLimiter
from aggregator.policy.reload import PolicyHolder
from aggregator.policy.vending import PARENT_CLAIM, mint_child
from aggregator.registry.models import SERVER_NAME_PATTERN
from aggregator.registry.store import RawServers, Registry
from aggregator.tools.activity import ActivityAdmin
from aggregator.tools.base import AdminTool, Arguments, NoArguments, Permission, require
from aggregator.tools.checks import check_url, fill_template
from aggregator.tools.groups import GroupAdmin
from aggregator.tools.registration import Register, openapi_entry
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.upstream import Upstream


class ServiceName(Arguments):
    service_name: str = Field(pattern=SERVER_NAME_PATTERN, description="The registered server's name.")


class Toggle(ServiceName):
    enabled: bool = Field(description="true to enable the server, false to disable it.")


class MintRequest(Arguments):
    scopes: list[str] = Field(description="Scopes for the token: a subset of your own.")
    ttl_seconds: int = Field(default=3600, gt=0, description="Lifetime of the token.")


class Admin:
    """The management tools of one gateway."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        pool: UpstreamPool,
        catalog: Catalog,
        policy: PolicyHolder,
        audit: AuditLog,
        on_policy_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._pool = pool
        self._catalog = catalog
        self._policy = policy
        self._minting = RateLimiter(rate=0.2, burst=10)
        self._aliases: dict[str, str] = {}
        self.tools = {
            tool.name: tool
            for tool in (
                AdminTool(
                    "list_services",
                    "List the registered MCP servers with their health.",
                    NoArguments,
                    "list_service",
                    self._list,
                ),
                AdminTool(
                    "healthcheck",
                    "Health of every server you may see: state, latency, tools, last error.",
                    NoArguments,
                    "list_service",
                    self._list,
                ),
                AdminTool(
                    "register_service",
                    "Register an MCP server with the gateway.",
                    Register,
                    "register_service",
                    self._register,
                ),
                AdminTool("remove_service", "Remove a registered server.", ServiceName, "modify_service", self._remove),
                AdminTool(
                    "toggle_service", "Enable or disable a registered server.", Toggle, "toggle_service", self._toggle
                ),
                AdminTool(
                    "refresh_service",
                    "Re-list a server's tools, resources and prompts now.",
                    ServiceName,
                    "health_check_service",
                    self._refresh,
                ),
                AdminTool(
                    "generate_token",
                    "Mint a gateway token for yourself with a subset of your scopes; it expires no later than yours "
                    "and is revoked with it.",
                    MintRequest,
                    None,
                    self._mint,
                ),
                *GroupAdmin(policy, on_policy_change).tools(),
                *ActivityAdmin(policy, audit, catalog, settings.gateway_server_name, lambda: self.tools).tools(),
            )
        }

    def add(self, tools: Iterable[AdminTool], *, visible_as: str | None = None) -> None:
        """Add gateway tools; `visible_as` makes them visible exactly when that tool is."""
        for tool in tools:
            self.tools[tool.name] = tool
            if visible_as is not None and tool.name != visible_as:
                self._aliases[tool.name] = visible_as

    def visible(self, principal: Principal, name: str) -> bool:
        """Whether `principal` may see and call the admin tool `name`."""
        name = self._aliases.get(name, name)
        tool = self.tools[name]
        policy = self._policy.current
        if not policy.allows(principal, self._settings.gateway_server_name, "tools/call", name):
            return False
        return tool.permission is None or policy.may_administer(principal, tool.permission)

    async def call(self, principal: Principal, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
        """Validate the arguments and run the tool as `principal`."""
        tool = self.tools[name]
        try:
            parsed = tool.arguments.model_validate(arguments or {})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in error.errors())
            return _error(f"Invalid arguments for {name}: {problems}")
        result = await tool.run(principal, parsed)
        if isinstance(result, types.CallToolResult):
            return result  # call_tool (discovery mode) answers with the called tool's own result
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(result, indent=1, default=str))],
            structured_content={"result": result} if not isinstance(result, dict) else result,
        )

    def _require(self, principal: Principal, permission: Permission, server: str) -> None:
        """The UI permission for the server acted on (never just for some server); see `tools.base`."""
        require(self._policy.current, principal, permission, server, _ACTIONS[permission])

    async def _list(self, principal: Principal, arguments: NoArguments) -> dict[str, Any]:
        policy = self._policy.current
        visible = [u for u in self._pool if policy.may_administer(principal, "list_service", u.name)]
        return {"services": [describe(u) for u in visible], "registry_error": self._registry.error}

    async def _register(self, principal: Principal, arguments: Register) -> dict[str, Any]:
        self._require(principal, "register_service", arguments.service_name)
        entry: dict[str, Any] = {"transport": arguments.transport}
        if arguments.transport == "stdio":
            entry |= self._stdio_entry(arguments)
        elif arguments.transport == "openapi":
            entry |= openapi_entry(arguments, AddressPolicy.from_settings(self._settings))
        else:
            if arguments.url is None:
                raise AccessDeniedError(f"A {arguments.transport} server needs a url.")
            if arguments.template is not None or arguments.values:
                raise AccessDeniedError("template and values are for stdio servers only.")
            check_url(arguments.url, AddressPolicy.from_settings(self._settings))
            entry["url"] = arguments.url
        for key in ("description", "tags", "prefix", "timeout"):
            if (value := getattr(arguments, key)) not in (None, "", []):
                entry[key] = value
        entry["registered_by"] = principal.subject  # marks the entry as caller input: never expanded

        def add(raw: RawServers) -> None:
            if arguments.service_name in raw:
                raise AccessDeniedError(f"A server named '{arguments.service_name}' is already registered.")
            raw[arguments.service_name] = entry

        await self._registry.change(add)
        return {"registered": arguments.service_name, "entry": entry}

    def _stdio_entry(self, arguments: Register) -> dict[str, Any]:
        """The command line of the operator's template that `arguments` names, with the caller's values."""
        templates = self._settings.stdio_templates
        offered = ", ".join(sorted(templates)) or "none (the operator has set no stdio_templates)"
        if arguments.template is None:
            raise AccessDeniedError(f"A stdio server needs a template; offered: {offered}.")
        if (template := templates.get(arguments.template)) is None:
            raise AccessDeniedError(f"There is no stdio template '{arguments.template}'; offered: {offered}.")
        command, *args = fill_template(arguments.template, template, arguments.values)
        entry: dict[str, Any] = {"command": command, "args": args}
        if template.env:
            entry["env"] = dict(template.env)
        if template.cwd is not None:
            entry["cwd"] = str(template.cwd)
        return entry

    async def _remove(self, principal: Principal, arguments: ServiceName) -> dict[str, Any]:
        self._require(principal, "modify_service", arguments.service_name)

        def remove(raw: RawServers) -> None:
            _known(raw, arguments.service_name)
            del raw[arguments.service_name]

        await self._registry.change(remove)
        return {"removed": arguments.service_name}

    async def _toggle(self, principal: Principal, arguments: Toggle) -> dict[str, Any]:
        self._require(principal, "toggle_service", arguments.service_name)

        def toggle(raw: RawServers) -> None:
            _known(raw, arguments.service_name)
            raw[arguments.service_name] = {**raw[arguments.service_name], "enabled": arguments.enabled}

        await self._registry.change(toggle)
        return {"service": arguments.service_name, "enabled": arguments.enabled}

    async def _refresh(self, principal: Principal, arguments: ServiceName) -> dict[str, Any]:
        self._require(principal, "health_check_service", arguments.service_name)
        upstream = self._pool.get(arguments.service_name)
        await upstream.refresh()
        return describe(upstream)

    async def _mint(self, principal: Principal, arguments: MintRequest) -> dict[str, Any]:
        """A token for the caller: a subset of its scopes, never outliving its token (`mint_child`)."""
        self._minting.check(principal, "generate_token")
        allowed = self._policy.current.scopes_of(principal)
        if extra := sorted(set(arguments.scopes) - allowed) if not principal.unrestricted else []:
            raise AccessDeniedError(f"You may only grant scopes you hold; not: {', '.join(extra)}.")
        if arguments.ttl_seconds > self._settings.auth.max_token_ttl:
            raise AccessDeniedError(f"ttl_seconds may be at most {self._settings.auth.max_token_ttl}.")
        token, claims = mint_child(self._settings.auth, principal, arguments.scopes, arguments.ttl_seconds)
        lifetime = int(claims["exp"]) - int(claims["iat"])
        result: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "expires_at": claims["exp"],
            "jti": claims["jti"],
            "parent_jti": claims.get(PARENT_CLAIM, []),
            "clipped": lifetime < arguments.ttl_seconds,
        }
        if result["clipped"]:
            result["note"] = (
                f"ttl_seconds {arguments.ttl_seconds} was shortened to {lifetime}: a minted token never outlives "
                "the token it was minted with."
            )
        return result


def describe(upstream: Upstream) -> dict[str, Any]:
    """An upstream as the admin tools, the health resource and the TUI show it."""
    spec = upstream.spec
    return {
        "name": upstream.name,
        "transport": spec.transport,
        "enabled": spec.enabled,
        "state": upstream.state.value,
        "era": upstream.protocol_version,
        "description": spec.description,
        "tags": list(spec.tags),
        "tools": len(upstream.listing.tools),
        "resources": len(upstream.listing.resources),
        "prompts": len(upstream.listing.prompts),
        "latency_ms": upstream.latency_ms,
        "last_check": upstream.last_check,
        "last_error": upstream.last_error,
        "recent_stderr": list(upstream.recent_stderr),  # a stdio upstream's latest stderr lines, masked
    }


_ACTIONS: dict[str, str] = {
    "list_service": "Listing a server",
    "register_service": "Registering a server",
    "toggle_service": "Enabling or disabling a server",
    "modify_service": "Removing a server",
    "health_check_service": "Refreshing a server",
}


def _known(raw: RawServers, name: str) -> None:
    if name not in raw:
        raise UnknownNameError("server", name, [])


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)
