"""`/metrics`: the Prometheus text exposition of the gateway's counters (`aggregator.server.metrics`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aggregator.errors import AuthenticationError
from aggregator.http.auth import Authenticator, challenge
from aggregator.policy.reload import PolicyHolder
from aggregator.server.metrics import CONTENT_TYPE, Metrics
from aggregator.upstreams.pool import UpstreamPool


def metrics_routes(
    authenticator: Authenticator, policy: PolicyHolder, metrics: Metrics | None, pool: UpstreamPool, *, public: bool
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
        return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return [Route("/metrics", scrape, methods=["GET"])]
