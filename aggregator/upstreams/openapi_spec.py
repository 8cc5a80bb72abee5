"""An openapi upstream's description: read from a file or a URL, cut to the chosen operations, named.

`SpecSource.read()` returns the document when it changed since the last read, else None: a file
is read again only when its stamp (mtime, size) changed, a URL is fetched again and compared by
digest, so re-reading on every listing costs a `stat` or one GET. `prepare()` turns a document
into what fastmcp is given: only the operations `include`/`exclude` select (by operationId or
tag), a tool name for each operationId, and the base URL requests go to.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import anyio
import httpx2
import yaml

from aggregator.config.files import stamp
from aggregator.errors import UpstreamUnavailableError
from aggregator.registry.models import OpenApiUpstream
from aggregator.registry.openapi import spec_is_url

MAX_SPEC_BYTES = 32 * 1024 * 1024
"""The largest OpenAPI document read (GitHub's whole REST description is 13 MB)."""
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_NAME_SEPARATORS = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class SpecSource:
    """Where one upstream's OpenAPI document lives, and what was read from it last."""

    upstream: str
    location: str
    """An http(s) URL, or an absolute file path."""
    http: httpx2.AsyncClient
    _stamp: tuple[int, int] | None = field(default=None, init=False)
    _digest: str | None = field(default=None, init=False)

    @classmethod
    def of(cls, upstream: str, spec: OpenApiUpstream, folder: Path | None, http: httpx2.AsyncClient) -> SpecSource:
        """The source `spec` names; a relative file path is taken from `folder` (the servers file's folder)."""
        if spec_is_url(spec.spec):
            return cls(upstream, spec.spec, http)
        path = Path(spec.spec).expanduser()
        if not path.is_absolute() and folder is not None:
            path = folder / path
        return cls(upstream, str(path.absolute()), http)

    @property
    def is_url(self) -> bool:
        return spec_is_url(self.location)

    def changed_on_disk(self) -> bool:
        """Whether a file spec's stamp differs from the one last read (always false for a URL)."""
        return not self.is_url and stamp(Path(self.location)) != self._stamp

    async def read(self) -> dict[str, Any] | None:
        """The parsed document if it changed since the last read (the first read always returns it), else None."""
        if self.is_url:
            content = await self._fetch()
        else:
            if not self.changed_on_disk():
                return None
            self._stamp = stamp(Path(self.location))
            content = await anyio.to_thread.run_sync(self._read_file)
        digest = hashlib.sha256(content).hexdigest()
        if digest == self._digest:
            return None
        self._digest = digest  # a document that cannot be used is reported once, not on every listing
        return await anyio.to_thread.run_sync(self._parse, content)

    def _read_file(self) -> bytes:
        try:
            with open(self.location, "rb") as handle:
                content = handle.read(MAX_SPEC_BYTES + 1)
        except OSError as error:
            raise self.unusable(error.strerror or str(error)) from None
        if len(content) > MAX_SPEC_BYTES:
            raise self.unusable(f"it is larger than {MAX_SPEC_BYTES // 2**20} MiB")
        return content

    async def _fetch(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with self.http.stream("GET", self.location, headers={"Accept": "application/json, */*"}) as response:
                if response.status_code != 200:
                    raise self.unusable(f"HTTP {response.status_code} {response.reason_phrase}")
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_SPEC_BYTES:
                        raise self.unusable(f"it is larger than {MAX_SPEC_BYTES // 2**20} MiB")
                    chunks.append(chunk)
        except httpx2.HTTPError as error:
            raise self.unusable(f"{type(error).__name__}: {error}") from None
        return b"".join(chunks)

    def _parse(self, content: bytes) -> dict[str, Any]:
        """JSON, or YAML (a superset); an OpenAPI 3.x document with paths."""
        try:
            if content.lstrip()[:1] == b"{":
                document = json.loads(content)
            else:
                document = yaml.load(content, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except (ValueError, yaml.YAMLError) as error:
            raise self.unusable(f"it is neither JSON nor YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(document, dict):
            raise self.unusable("it is not a mapping")
        if "swagger" in document:
            raise self.unusable("it is a Swagger 2.0 document; convert it to OpenAPI 3")
        if not str(document.get("openapi", "")).startswith("3."):
            raise self.unusable("it has no 'openapi: 3.x' version")
        if not isinstance(document.get("paths"), dict):
            raise self.unusable("it has no paths")
        return document

    def unusable(self, reason: str) -> UpstreamUnavailableError:
        """The error for a spec that cannot be read or used, naming where it is and why."""
        return UpstreamUnavailableError(self.upstream, f"its OpenAPI spec {self.location} cannot be used: {reason}")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document as fastmcp is given it: the chosen operations, their tool names, the base URL."""

    document: dict[str, Any]
    names: dict[str, str]
    base_url: str
    unmatched: tuple[str, ...]
    """`include`/`exclude` entries that name no operationId and no tag of the document (likely typos)."""


def prepare(upstream: str, spec: OpenApiUpstream, location: str, document: dict[str, Any]) -> Prepared:
    """Select, name and place the operations of `document` as `spec` says."""
    include, exclude = frozenset(spec.include), frozenset(spec.exclude)
    known: set[str] = set()
    paths: dict[str, Any] = {}
    names: dict[str, str] = {}
    for path, item, method, operation in _operations(document):
        operation_id = operation.get("operationId")
        keys = {str(tag) for tag in operation.get("tags") or ()} | ({str(operation_id)} if operation_id else set())
        known |= keys
        if (include and not keys & include) or keys & exclude:
            continue
        paths.setdefault(path, {key: value for key, value in item.items() if key not in METHODS})[method] = operation
        if operation_id:
            names[str(operation_id)] = spec.names.get(str(operation_id)) or _tool_name(str(operation_id))
    unmatched = tuple(sorted((include | exclude) - known))
    return Prepared({**document, "paths": paths}, names, _base_url(upstream, spec, location, document), unmatched)


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        if isinstance(item, dict):
            for method, operation in item.items():
                if method in METHODS and isinstance(operation, dict):
                    yield str(path), item, method, operation


def _tool_name(operation_id: str) -> str:
    """`repos/get-content` -> `repos_get_content`: fastmcp would drop the '/' and run the words together."""
    return _NAME_SEPARATORS.sub("_", operation_id).strip("_") or operation_id


def _base_url(upstream: str, spec: OpenApiUpstream, location: str, document: dict[str, Any]) -> str:
    """`base_url` as configured, else the document's first server URL (its variables at their defaults)."""
    if spec.base_url is not None:
        return spec.base_url
    servers = document.get("servers") or [{}]
    server = servers[0] if isinstance(servers, list) and isinstance(servers[0], dict) else {}
    url = str(server.get("url") or "")
    for name, variable in (server.get("variables") or {}).items():
        if isinstance(variable, dict):
            url = url.replace(f"{{{name}}}", str(variable.get("default", "")))
    if spec_is_url(location):
        url = urljoin(location, url)
    if not spec_is_url(url):
        raise UpstreamUnavailableError(
            upstream, f"its OpenAPI spec names no absolute server URL ({url or 'none'}); set base_url"
        )
    return url
