"""nginx's cache of `/auth/validate` allows: what its key holds, how long an entry lives, when it is flushed.

A passthrough request costs nginx an `auth_request` subrequest to the gateway. nginx may answer it
from a cache of the gateway's earlier *allows* instead (`nginx.auth_cache_ttl` seconds, default 5;
0 turns the cache off):

* **Key**: the generation (below), the passthrough server, the request method, the whole
  `Authorization` header, the `Mcp-Method` and `Mcp-Name` headers, and the whole request body
  with the digits of its JSON-RPC `"id":N` blanked. A decision depends on the body (the method
  and tool of every message, and whether the 2026-07-28 headers agree with it), so no key ever
  leaves the body out: headers alone would let a body that disagrees with them ride on an allow
  made for an honest one. Blanking a number's digits cannot change any string or structure of
  the document, so every body sharing a key gets the same decision. nginx hands the gateway the
  very header values the key holds (`proxy_set_header`), never a client's duplicates. A body of
  4000 bytes or more (or of unknown length) is never looked up: its key would not fit nginx's buffer.
* **Lifetime**: the gateway marks an allow cacheable with `X-Accel-Expires`: the TTL nginx asks
  for, never past the token's `exp`. It never marks a refusal, and nginx stores nothing the
  gateway did not mark and no status but 200. A refused request is asked again every time, so a
  grant or a refreshed token takes effect at once.
* **Flush**: the generation digests the auth settings, the parsed scopes.yml and the revocation
  list; it is rendered into the key, and nginx sends it with every subrequest. The gateway marks
  an allow cacheable only when its own generation (the policy it decided under, the revocation
  list it checked) is the same, so an entry never holds a decision made under other files. A
  change to either file renders a different config; a managed nginx (`nginx.manage`) is
  re-rendered and reloaded when they change, and its new workers never look up an older
  generation's entries. Unmanaged, an entry outlives a change by the TTL at most, and nothing new
  is kept until nginx is re-rendered (`mcp-aggregator nginx reload`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

from aggregator.config.files import stamp
from aggregator.config.settings import AuthSettings, Settings
from aggregator.errors import ConfigError
from aggregator.policy.principal import Principal
from aggregator.policy.reload import PolicyHolder
from aggregator.policy.scopes import Policy, ScopesFile, load_scopes

logger = logging.getLogger(__name__)

REVOCATIONS = "revoked.json"
TTL_HEADER = "x-mcp-cache-ttl"
"""Set by nginx on a subrequest when it caches allows: the longest it may keep one, in seconds."""
GENERATION_HEADER = "x-mcp-cache-generation"
"""Set by nginx on a subrequest: the generation its cache key holds."""


def generation(auth: AuthSettings, scopes: ScopesFile | None, revocations: bytes) -> str:
    """A digest of everything a decision depends on besides the request: auth settings, policy, revocations.

    `scopes` None stands for a scopes.yml that cannot be read: a generation no gateway computes.
    """
    digest = hashlib.sha256()
    for part in (auth.model_dump_json(), "" if scopes is None else scopes.model_dump_json()):
        data = part.encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    digest.update(b"unreadable" if scopes is None else b"")
    digest.update(len(revocations).to_bytes(8, "big") + revocations)
    return digest.hexdigest()[:16]


def watched_files(settings: Settings) -> tuple[Path, ...]:
    """The files the generation depends on: scopes.yml (if any) and the revocation list."""
    revocations = settings.data_dir / REVOCATIONS
    return (settings.scopes_file, revocations) if settings.scopes_file is not None else (revocations,)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def rendered_generation(settings: Settings) -> str:
    """The generation of the files as they are now, for the rendered config."""
    scopes: ScopesFile | None = ScopesFile()
    if settings.scopes_file is not None:
        try:
            scopes = load_scopes(settings.scopes_file)
        except ConfigError:
            scopes = None  # the gateway keeps its last good policy: match nothing until the file is fixed
    return generation(settings.auth, scopes, _read(settings.data_dir / REVOCATIONS))


def cache_values(settings: Settings, directory: Path) -> dict[str, str]:
    """The template values of the cache: its zone's path and lifetime, and the directives of the auth location."""
    ttl = settings.nginx.auth_cache_ttl
    values = {
        "auth_cache_path": str(directory),
        "auth_cache_inactive": f"{max(ttl, 1)}s",
        "auth_cache_ttl": str(ttl) if ttl else '""',  # an empty value removes a client's own header
    }
    if ttl == 0:
        values["auth_cache_generation"] = '""'
        values["auth_cache"] = "            proxy_cache off;\n"
        return values
    current = rendered_generation(settings)
    values["auth_cache_generation"] = current
    # Fields are joined by newlines, which no header value holds: two different requests never
    # spell the same key. The body comes last, so its own newlines cannot shift a field.
    fields = (current, "$mcp_server", "$request_method", "$http_authorization", "$http_mcp_method", "$http_mcp_name")
    key = "\\n".join((*fields, "$mcp_body_key"))
    lines = [
        f"# Allows are reused up to {ttl} s (never past the token's exp); refusals never are.",
        "proxy_cache $mcp_auth_zone;  # off for a body of 4000 bytes or more",
        "proxy_buffer_size 16k;  # room for the key: a long token and the body",
        "proxy_busy_buffers_size 16k;",
        "proxy_cache_methods GET HEAD POST;",
        f'proxy_cache_key "{key}";',
        "proxy_no_cache $mcp_auth_no_store;",
    ]
    values["auth_cache"] = "".join(f"            {line}\n" for line in lines)
    return values


class CacheMarks:
    """The gateway's side: whether, and for how long, nginx may keep one allow (`X-Accel-Expires`)."""

    def __init__(self, auth: AuthSettings, policy: PolicyHolder, revocations: Path) -> None:
        self._auth = auth
        self._policy = policy
        self._revocations = revocations
        self._seen: tuple[Policy, tuple[int, int] | None] | None = None
        self._generation = ""
        self._mismatch: tuple[str, str] | None = None

    def snapshot(self) -> tuple[Policy, str]:
        """The policy in force and its generation (with the revocation list as it is now), read together.

        The caller decides under this very policy and takes the snapshot before checking the token:
        whatever changes later shows as a generation other than nginx's.
        """
        seen = (self._policy.current, stamp(self._revocations))
        if self._seen is None or seen[0] is not self._seen[0] or seen[1] != self._seen[1]:
            self._generation = generation(self._auth, seen[0].file, _read(self._revocations))
            self._seen = seen
        return seen[0], self._generation

    def allow_headers(
        self, headers: Mapping[str, str], principal: Principal, decided_under: str, now: float
    ) -> dict[str, str]:
        """`X-Accel-Expires` for an allow when nginx asked (`X-Mcp-Cache-Ttl`): 0 unless it was decided under
        the generation nginx keys it with."""
        requested = headers.get(TTL_HEADER)
        if requested is None:
            return {}
        theirs = headers.get(GENERATION_HEADER, "")
        if theirs != decided_under:
            if self._mismatch != (theirs, decided_under):  # once per pair: a reload under way, or a stale config
                self._mismatch = (theirs, decided_under)
                logger.info("passthrough.cache_generation_differs", extra={"nginx": theirs, "gateway": decided_under})
            return {"X-Accel-Expires": "0"}
        return {"X-Accel-Expires": str(lifetime(requested, principal.expires_at, now))}


def lifetime(requested: str, expires_at: int | None, now: float) -> int:
    """Whole seconds nginx may reuse an allow: the TTL it asked for, ending before the token's `exp`; 0: never.

    nginx adds the seconds to its whole-second clock when it stores the answer (which may already
    read one second past `now`) and serves the entry until that second ends: two seconds are kept
    back, so the entry is gone before `exp`.
    """
    try:
        seconds = max(0, int(requested))
    except ValueError:
        return 0
    if expires_at is not None:
        seconds = min(seconds, expires_at - int(now) - 2)
    return max(0, seconds)
