"""An OIDC issuer's signing keys: found by discovery, cached, refetched on an unknown `kid` (rate-limited)."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import httpx2
import jwt

from aggregator.errors import AuthenticationError

logger = logging.getLogger(__name__)


class JwksCache:
    """The current keys of one issuer. A token signed with a new `kid` triggers at most one refetch per interval."""

    def __init__(self, issuer: str, jwks_uri: str | None, http: httpx2.AsyncClient, refetch_interval: float) -> None:
        self._issuer = issuer
        self._jwks_uri = jwks_uri
        self._http = http
        self._refetch_interval = refetch_interval
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = anyio.Lock()

    async def key(self, kid: str) -> Any:
        """The verification key for `kid`; `AuthenticationError` if the issuer does not publish it."""
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            now = anyio.current_time()
            if kid not in self._keys and (self._fetched_at is None or now - self._fetched_at >= self._refetch_interval):
                self._fetched_at = now
                await self._fetch()
        if kid not in self._keys:
            shown = repr(kid) if len(kid) <= 64 else repr(kid[:61]) + "..."  # the caller's choice: keep it short
            raise AuthenticationError(f"unknown key id {shown} for issuer {self._issuer}")
        return self._keys[kid]

    async def _fetch(self) -> None:
        try:
            if self._jwks_uri is None:
                discovery = await self._get_json(self._issuer.rstrip("/") + "/.well-known/openid-configuration")
                self._jwks_uri = str(discovery["jwks_uri"])
            document = await self._get_json(self._jwks_uri)
            keys = {}
            for entry in document.get("keys", []):
                if entry.get("use", "sig") != "sig" or "kid" not in entry:
                    continue
                try:
                    keys[entry["kid"]] = jwt.PyJWK(entry).key
                except jwt.PyJWTError as error:
                    logger.warning(
                        "jwks.key_skipped", extra={"issuer": self._issuer, "kid": entry["kid"], "error": str(error)}
                    )
        except (httpx2.HTTPError, KeyError, ValueError) as error:
            logger.warning(
                "jwks.fetch_failed", extra={"issuer": self._issuer, "error": f"{type(error).__name__}: {error}"}
            )
            raise AuthenticationError(f"signing keys of issuer {self._issuer} cannot be fetched") from None
        self._keys = keys
        logger.info("jwks.fetched", extra={"issuer": self._issuer, "kids": sorted(keys)})

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self._http.get(url, timeout=10)
        response.raise_for_status()
        document = json.loads(response.content)
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not return a JSON object")
        return document
