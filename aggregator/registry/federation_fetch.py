"""Reading a followed registry's list over HTTP: every page, bounded in bytes, pages and servers.

The registry's URL is the operator's (servers.yaml), so it is reached like an operator's upstream;
its answer is data (`aggregator.registry.federation_answer`). The credential (`auth_for`) is built
by the caller, which owns the upstream credential code (`aggregator.upstreams.credentials`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import httpx2

from aggregator.registry.federation_answer import (
    Followed,
    Published,
    RegistryAnswerError,
    RegistryUnreachableError,
    parse_page,
)

MAX_PAGE_BYTES = 4 * 1024 * 1024
"""Longest page a registry may answer with; a longer one is refused (a page holds at most 100 servers)."""
MAX_PAGES = 100
PAGE_LIMIT = 100
AuthFor = Callable[[str, Followed], httpx2.Auth | None]
"""The gateway's credential for registry `name` (None: none)."""


def shown(url: str) -> str:
    """A registry URL for logs, errors and listings: no user information, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        pass
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@runtime_checkable
class _Closable(Protocol):
    async def aclose(self) -> None: ...


class RegistryReader:
    """Reads a registry's whole list (every page, latest versions) with the gateway's own credential."""

    def __init__(self, auth_for: AuthFor, transport: Callable[[], httpx2.AsyncBaseTransport] | None = None) -> None:
        self._auth_for = auth_for
        self._transport = transport

    async def read(self, name: str, registry: Followed) -> list[Published]:
        """Every server registry `name` publishes; `RegistryError` if it cannot be reached or its answer is refused."""
        auth = self._auth_for(name, registry)
        try:
            return await self._read(name, registry, auth)
        finally:
            if isinstance(auth, _Closable):  # a client-credentials token has an HTTP client of its own
                await auth.aclose()

    async def _read(self, name: str, registry: Followed, auth: httpx2.Auth | None) -> list[Published]:
        servers: list[Published] = []
        cursors: set[str] = set()
        cursor: str | None = None
        async with httpx2.AsyncClient(
            auth=auth,
            timeout=registry.timeout,
            trust_env=False,
            follow_redirects=False,
            transport=self._transport() if self._transport is not None else None,
        ) as client:
            for _ in range(MAX_PAGES):
                page = parse_page(name, await self._page(client, name, registry.url, cursor))
                servers.extend(page.servers)
                if len(servers) > registry.max_servers:
                    raise RegistryAnswerError(
                        f"Registry '{name}' publishes more than {registry.max_servers} servers (max_servers); "
                        "its answer is refused."
                    )
                cursor = page.next_cursor
                if cursor is None:
                    return servers
                if cursor in cursors:
                    raise RegistryAnswerError(f"Registry '{name}' repeats the page cursor {cursor[:80]!r}; refused.")
                cursors.add(cursor)
        raise RegistryAnswerError(f"Registry '{name}' answers more than {MAX_PAGES} pages; its answer is refused.")

    async def _page(self, client: httpx2.AsyncClient, name: str, url: str, cursor: str | None) -> bytes:
        parameters = {"limit": str(PAGE_LIMIT), "version": "latest"} | ({"cursor": cursor} if cursor else {})
        try:
            async with client.stream("GET", url, params=parameters, headers={"Accept": "application/json"}) as answer:
                if answer.status_code != 200:
                    raise RegistryUnreachableError(
                        f"Registry '{name}' at {shown(url)} answered HTTP {answer.status_code}."
                    )
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_PAGE_BYTES:
                        raise RegistryAnswerError(
                            f"Registry '{name}' answered a page longer than {MAX_PAGE_BYTES} bytes; refused."
                        )
                return bytes(body)
        except httpx2.HTTPError as error:
            reason = type(error).__name__
            raise RegistryUnreachableError(f"Registry '{name}' at {shown(url)} cannot be reached: {reason}.") from None
