"""One gateway, assembled: settings, policy, upstreams, catalog, the gateway's own tools and the MCP server.

`build_gateway` wires the parts (nothing runs yet); `Gateway.running()` connects the upstreams and
runs the background tasks. The HTTP edge (`aggregator.http.app`) and the CLI serve it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskStatus
from mcp.server import Server

from aggregator.catalog.catalog import Catalog
from aggregator.catalog.names import BudgetWarnings
from aggregator.cluster import Cluster
from aggregator.config.settings import Settings
from aggregator.nginx import NginxRenderer
from aggregator.policy.addresses import AddressPolicy
from aggregator.policy.audit import AuditLog
from aggregator.policy.principal import Principal
from aggregator.policy.ratelimit import ConcurrencyLimiter, RateLimiter
from aggregator.policy.reload import PolicyHolder
from aggregator.policy.revocation import RevocationList
from aggregator.policy.tokens import TokenVerifier
from aggregator.registry.federation import Federation
from aggregator.registry.models import ServersFile
from aggregator.registry.store import Registry
from aggregator.server.guard import Guard
from aggregator.server.handlers import GatewayServer
from aggregator.server.metrics import Metrics, catalog_labels
from aggregator.tasks.extension import TasksExtension
from aggregator.tools.admin import Admin
from aggregator.tools.finder import FINDER, CallTool, DescribeTool, Finder
from aggregator.tools.pinning import PinningAdmin
from aggregator.tools.registries import RegistriesAdmin, follow
from aggregator.tracing import Tracing
from aggregator.trust.gate import Gate
from aggregator.trust.sharing import PinRecords
from aggregator.trust.store import PinStore
from aggregator.upstreams.pool import UpstreamPool
from aggregator.upstreams.state import Timings
from aggregator.upstreams.upstream import Upstream

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Gateway:
    """The live parts of one gateway, for the CLI and for tests to reach."""

    settings: Settings
    pool: UpstreamPool
    catalog: Catalog
    guard: Guard
    verifier: TokenVerifier | None
    http: httpx2.AsyncClient
    registry: Registry
    finder: Finder
    renderers: list[NginxRenderer]
    handlers: GatewayServer
    server: Server[Any]
    cluster: Cluster | None = None
    """What this replica shares with the others through Redis (`cluster.redis_url`); None: nothing."""
    tracing: Tracing | None = None
    """The gateway's spans (`OTEL_*`); flushed and closed when `running()` ends. None: tracing is off."""
    federation: Federation | None = None
    """The registries this gateway follows (servers.yaml `registries:`), refreshed while it runs."""
    tasks: TasksExtension | None = None
    """The tasks extension (SEP-2663): installed on `server`, its background calls run while `running()` does."""

    def __post_init__(self) -> None:
        if self.tasks is not None:
            self.tasks.install(self.server)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Connect the upstreams and run the background tasks (notifications, policy reload)."""
        shared: AbstractAsyncContextManager[None] = self.cluster.running() if self.cluster else nullcontext()
        following: AbstractAsyncContextManager[Any] = self.federation or nullcontext()
        try:
            async with shared, self.http, self.pool, following, anyio.create_task_group() as background:
                background.start_soon(self.handlers.notifier.run)
                background.start_soon(self.guard.policy.watch, self.settings.scopes_reload_interval, self._changed)
                background.start_soon(_announce_connected, self.pool)
                background.start_soon(self.registry.watch, self.settings.servers_reload_interval)
                background.start_soon(self.finder.run)
                if self.tasks is not None:
                    await background.start(self.tasks.serve)
                if self.catalog.gate is not None:
                    background.start_soon(self.catalog.gate.watch, self.settings.servers_reload_interval)
                if self.settings.nginx.manage:
                    await background.start(self._manage_nginx)
                try:
                    yield
                finally:
                    background.cancel_scope.cancel()
                    self.handlers.resources.close_listeners()
        finally:
            self.guard.audit.close()  # also when the upstreams or a background task failed on the way
            if self.tracing is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.tracing.close)

    async def _manage_nginx(self, *, task_status: TaskStatus[None]) -> None:
        """Keep nginx in step with the registry: one render now, then one per (debounced) change."""
        async with NginxRenderer(self.settings, lambda: self.registry.current) as renderer:
            self.renderers.append(renderer)
            renderer.schedule()
            task_status.started()
            await anyio.sleep_forever()

    def _changed(self) -> None:
        self.handlers.notifier.changed()


def build_gateway(settings: Settings, servers: ServersFile, tracing: Tracing | None = None) -> Gateway:
    """Create (without starting) the policy, pool, catalog and downstream server for `servers`; `tracing`:
    the spans of every request (`aggregator.tracing.tracing_from`)."""
    audit = AuditLog(settings.data_dir / "audit.log" if settings.audit_log else None)
    gate = Gate(PinStore(settings.data_dir / "pins.json"), audit)
    catalog = Catalog(gate)
    timings = Timings(
        connect_timeout=settings.connect_timeout,
        health_interval=settings.health_interval,
        backoff_initial=settings.backoff_initial,
        backoff_max=settings.backoff_max,
        circuit_failures=settings.limits.circuit_failures,
        circuit_cooldown=settings.limits.circuit_cooldown,
        max_result_bytes=settings.limits.max_result_bytes,
    )

    def is_gateway_tool(name: str) -> bool:
        return handlers is not None and handlers.admin is not None and name in handlers.admin.tools

    cluster = None
    if settings.cluster.enabled:
        data = settings.data_dir
        pins = PinRecords(gate)
        cluster = Cluster(settings.cluster, data / "revoked.json", settings.servers_file, settings.scopes_file, pins)
        if cluster.pins is not None:
            pins.share = cluster.pins.written
    guard = Guard(
        policy=PolicyHolder(settings.scopes_file),
        limiter=RateLimiter(
            settings.rate_limit_per_second,
            settings.rate_limit_burst,
            buckets=cluster.buckets if cluster is not None else None,
        ),
        audit=audit,
        metrics=Metrics(catalog_labels(catalog, settings.gateway_server_name, is_gateway_tool), gate),
        principal_slots=ConcurrencyLimiter(settings.limits.max_calls_per_principal, "for"),
        upstream_slots=ConcurrencyLimiter(settings.limits.max_calls_per_upstream, "to upstream"),
        max_argument_bytes=settings.limits.max_argument_bytes,
        after_call=(lambda principal, name: finder.called(principal, name)) if settings.search_learning else None,
        tracing=tracing,
    )
    handlers: GatewayServer | None = None

    budget = BudgetWarnings(settings.host_server_name, settings.name_budget)

    def changed(pool: UpstreamPool) -> None:
        catalog.rebuild(pool)
        budget.check(entry.item.name for entry in catalog.tools())
        if handlers is not None:
            handlers.notifier.changed()
            finder.changed()

    async def resource_updated(upstream: Upstream, uri: str) -> None:
        if handlers is not None:
            await handlers.resources.resource_updated(upstream.name, uri)

    pool = UpstreamPool(
        servers,
        timings,
        on_change=changed,
        scopes_of=lambda p: guard.policy.current.scopes_of(p),
        on_resource_updated=resource_updated,
        addresses=AddressPolicy.from_settings(settings),
        folder=settings.servers_file.resolve().parent,
    )
    gate.on_change = lambda: changed(pool)
    renderers: list[NginxRenderer] = []  # the running one, when `nginx.manage` is on

    async def registry_changed(servers: ServersFile) -> None:
        await federation.apply(servers)  # servers.yaml's servers and the followed ones, in one step
        for renderer in renderers:
            renderer.schedule()

    registry = Registry(settings.servers_file, servers, registry_changed, _shared(cluster, "servers"))
    federation = follow(settings, lambda: registry.current, pool.apply, lambda p: guard.policy.current.scopes_of(p))
    handlers = GatewayServer(catalog, pool, guard)
    scopes_written = _shared(cluster, "scopes")

    def policy_changed() -> None:
        handlers.notifier.changed()
        if scopes_written is not None:
            scopes_written()

    handlers.admin = Admin(
        settings, registry, pool, catalog, guard.policy, guard.audit, on_policy_change=policy_changed
    )
    handlers.discovery_mode = settings.discovery_mode
    handlers.management_on_mcp = settings.management_tools_on_mcp
    handlers.tasks = settings.tasks
    server = handlers
    finder = Finder(
        settings.search_uri or settings.data_dir / "index",
        settings.search_model,
        pool,
        lambda: server.catalog.tools(),
        server.visible_tools,
        settings.data_dir / "finder-prior.json" if settings.search_learning else None,
        settings.data_dir / "encoder",
    )

    async def describe(principal: Principal, arguments: DescribeTool) -> dict[str, Any]:
        return await server.describe_tool(principal, arguments.name)

    async def call(principal: Principal, arguments: CallTool) -> types.CallToolResult | types.InputRequiredResult:
        return await server.call_upstream_tool(principal, arguments.name, arguments.arguments)

    handlers.admin.add(finder.tools(describe, call), visible_as=FINDER)
    handlers.admin.add(PinningAdmin(gate, guard.policy).tools())
    handlers.admin.add(RegistriesAdmin(federation, guard.policy).tools(handlers.admin.tools))
    catalog.rebuild(pool)
    http = httpx2.AsyncClient(trust_env=False)
    verifier = None
    if settings.auth.enabled:
        verifier = TokenVerifier(settings.auth, http, RevocationList(settings.data_dir / "revoked.json"))
    return Gateway(
        settings,
        pool,
        catalog,
        guard,
        verifier,
        http,
        registry,
        finder,
        renderers,
        handlers,
        handlers.build(),
        cluster,
        tracing,
        federation=federation,
        tasks=TasksExtension(settings.tasks, shared=cluster.tasks if cluster is not None else None),
    )


def _shared(cluster: Cluster | None, kind: str) -> Callable[[], None] | None:
    """What tells the other replicas of a change made here through an admin tool to the `kind` file, if any."""
    shared = cluster.files.get(kind) if cluster is not None else None
    return shared.written if shared is not None else None


async def _announce_connected(pool: UpstreamPool) -> None:
    started = anyio.current_time()
    await pool.wait_until(UpstreamPool.all_connected)
    seconds = round(anyio.current_time() - started, 2)
    logger.info("gateway.all_upstreams_connected", extra={"upstreams": len(list(pool)), "seconds": seconds})
