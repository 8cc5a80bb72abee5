"""The openapi transport: a REST service, described by an OpenAPI document, served as an upstream in-process.

`open()` builds the upstream's HTTP clients, reads the spec, builds fastmcp's tools from it
(`openapi_server`) and serves them to the gateway's client over in-memory streams. From there on
it is an upstream like any other: listed, namespaced, filtered per caller, audited.

In-process rather than as a child process, on measured cost (2 shared cores, GitHub's 348
operations): a fastmcp child took 6.8 to 7.3 s to its first listing, 126 MB, and 0.3 s per
re-listing over its pipes; in-process the spec is read, prepared and parsed in 2.1 to 2.2 s (in a
worker thread), fastmcp's import is paid once (about 1 s, 25 MB, only when an openapi upstream
exists), and a re-listing takes 0.07 to 0.2 s. A child would also need its own copy of the
address checks and the credentials (OAuth2 token cache, SigV4); in-process the REST client is the
gateway's own: the upstream's credential through `auth`, and for a registered upstream,
connections only to addresses its policy allows.

The caller's token never reaches the REST service: requests carry the upstream's configured
headers and credential only. The spec is fetched with them only when it is on the same origin
as `base_url`, so a spec hosted elsewhere never sees the service's credential.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx2

from aggregator.errors import AccessDeniedError, UpstreamUnavailableError
from aggregator.policy.addresses import AddressPolicy
from aggregator.registry.models import OpenApiUpstream
from aggregator.sdk import TransportStreams
from aggregator.upstreams.openapi_spec import SpecSource

if TYPE_CHECKING:
    from aggregator.upstreams.openapi_server import Announce, OpenApiServer

WATCH_INTERVAL = 1.0
"""Seconds between looks at a file spec's stamp (one `stat`)."""
REST_SHARE = 0.9
"""The share of the upstream's timeout a REST call gets: the rest carries its error back in time."""

Connector = Callable[[], httpx2.AsyncBaseTransport]


@dataclass(frozen=True, slots=True)
class OpenApiTransport:
    """A REST service as an upstream (see the module docstring). A registered one connects only where allowed."""

    spec: OpenApiUpstream
    upstream: str
    folder: Path | None
    connect_timeout: float
    addresses: AddressPolicy
    connector: Connector | None
    """New HTTP transports whose connections are checked (`transports.checked_transport`); None: unchecked."""
    per_request_streams: bool = False
    pipes: bool = True  # in-memory streams: any transport error means the session is gone

    @asynccontextmanager
    async def open(self, auth: httpx2.Auth | None) -> AsyncIterator[TransportStreams]:
        try:
            from aggregator.upstreams.openapi_server import OpenApiServer, serve  # fastmcp only where used
        except ImportError as error:
            reason = f"transport 'openapi' needs fastmcp ({error.name} is missing): install mcp-aggregator[openapi]"
            raise UpstreamUnavailableError(self.upstream, reason) from None

        spec = self.spec
        deadline = spec.timeout * REST_SHARE
        async with self._client(deadline, auth, spec.headers) as rest, self._spec_client(auth) as fetching:
            source = SpecSource.of(self.upstream, spec, self.folder, fetching)
            service = OpenApiServer(self.upstream, spec, source, rest, deadline, self._admit)
            server = await service.load()
            async with serve(server) as (streams, announce), anyio.create_task_group() as tasks:
                if not source.is_url:
                    tasks.start_soon(_watch, source, service, announce)
                yield streams
                tasks.cancel_scope.cancel()

    def _client(self, timeout: float, auth: httpx2.Auth | None, headers: dict[str, str]) -> httpx2.AsyncClient:
        """An HTTP client that never takes a proxy from the environment; checked connections where registered."""
        transport = self.connector() if self.connector is not None else None
        return httpx2.AsyncClient(
            headers=headers, timeout=timeout, auth=auth, trust_env=False, transport=transport, follow_redirects=False
        )

    def _spec_client(self, auth: httpx2.Auth | None) -> httpx2.AsyncClient:
        """The spec's client: the service's headers and credential only on the service's own origin."""
        spec = self.spec
        if spec.base_url is not None and _origin(spec.spec) == _origin(spec.base_url):
            return self._client(self.connect_timeout, auth, spec.headers)
        return self._client(self.connect_timeout, None, {})

    async def _admit(self, base_url: str) -> None:
        """A registered upstream's base URL must resolve to allowed addresses only (checked again per connection)."""
        if self.connector is None:
            return
        url = httpx2.URL(base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with anyio.fail_after(self.connect_timeout):
                await self.addresses.resolve(url.host, port)
        except AccessDeniedError as refusal:
            raise UpstreamUnavailableError(self.upstream, f"its base URL {base_url} is refused: {refusal}") from None
        except (OSError, TimeoutError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise UpstreamUnavailableError(
                self.upstream, f"its base URL {base_url} cannot be resolved: {reason}"
            ) from None


async def _watch(source: SpecSource, service: OpenApiServer, announce: Announce) -> None:
    """Read a file spec again when its stamp changes; announce changed operations as `list_changed`."""
    while True:
        await anyio.sleep(WATCH_INTERVAL)
        if source.changed_on_disk() and await service.refresh():
            await announce()


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx2.URL(url) if url.lower().startswith(("http://", "https://")) else httpx2.URL("file:///")
    return parsed.scheme, parsed.host, parsed.port
