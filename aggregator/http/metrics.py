"""`/metrics`: the Prometheus text exposition of the gateway's counters (`aggregator.server.metrics`).

With `cluster.redis_url` set, also:

    mcp_aggregator_cluster_redis_up                      gauge: 1 while this replica reaches Redis, else 0
    mcp_aggregator_cluster_redis_transitions_total       counter: changes between reachable and not
    mcp_aggregator_cluster_local_fallbacks_total         counter: rate-limit decisions made locally, Redis away
    mcp_aggregator_cluster_sessions_adopted_total        counter: 2025-11-25 sessions this replica took over from
                                                         their shared record (begun or served on another replica)
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aggregator.cluster import Cluster
from aggregator.errors import AuthenticationError
from aggregator.http.auth import Authenticator, challenge
from aggregator.policy.reload import PolicyHolder
from aggregator.server.metrics import CONTENT_TYPE, Counter, Gauge, Metrics, exposition
from aggregator.upstreams.pool import UpstreamPool


def metrics_routes(
    authenticator: Authenticator,
    policy: PolicyHolder,
    metrics: Metrics | None,
    pool: UpstreamPool,
    *,
    public: bool,
    cluster: Cluster | None = None,
) -> list[Route]:
    """`/metrics`: public when `public` (`metrics_public`), else for callers with UI `list_service` on `all`."""

    async def scrape(request: Request) -> Response:
        if not public:
            try:
                principal = await authenticator.authenticate(request)
            except AuthenticationError as error:
                return challenge(request, error.reason, authenticator.origin)
            if not policy.current.may_administer(principal, "list_service", "all"):
                message = "Metrics need the UI permission list_service for all servers."
                return JSONResponse({"error": message}, status_code=403)
        body = metrics.render(pool) if metrics is not None else ""
        if cluster is not None:
            body += cluster_exposition(cluster)
        return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return [Route("/metrics", scrape, methods=["GET"])]


def cluster_exposition(cluster: Cluster) -> str:
    """The cluster's gauges and counters, read from `cluster` now."""
    health = cluster.health
    up = Gauge("mcp_aggregator_cluster_redis_up", "1 while this replica reaches Redis (cluster.redis_url), else 0.", ())
    up.set(value=1.0 if health.available else 0.0)
    transitions = Counter(
        "mcp_aggregator_cluster_redis_transitions_total", "Changes between Redis reachable and unreachable.", ()
    )
    transitions.inc(amount=float(health.transitions))
    fallbacks = Counter(
        "mcp_aggregator_cluster_local_fallbacks_total",
        "Rate-limit decisions made from this replica's own buckets because Redis was unavailable.",
        (),
    )
    fallbacks.inc(amount=float(health.fallbacks))
    adopted = Counter(
        "mcp_aggregator_cluster_sessions_adopted_total",
        "2025-11-25 sessions this replica took over, under the same id, from the record another replica shared: "
        "begun elsewhere (behind nginx, where the id hashes elsewhere) or moved here when their replica went away.",
        (),
    )
    adopted.inc(amount=float(cluster.sessions.adoptions))
    return exposition([up, transitions, fallbacks, adopted])
