"""Revoked token ids (`jti`), persisted as a JSON file so a revocation survives restarts.

Revoking a token also revokes every token minted from it (directly or further down): the verifier
asks about the token's own `jti` and every id in its `parent_jti` chain. With `cluster.redis_url`,
`aggregator.cluster.revocations` keeps this file and every other replica's equal through Redis.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path

from aggregator.config.files import locked, stamp, write_atomically
from aggregator.errors import ConfigError, ConfigIssue


class RevocationList:
    """The set of revoked `jti`s, written atomically on every change and re-read whenever the file
    changes, so `mcp-aggregator token revoke` takes effect in a running gateway (and its replicas)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp = stamp(path)
        self._revoked = self._read()

    def _read(self) -> set[str]:
        if not self._path.exists():
            return set()
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            return {str(jti) for jti in data["revoked"]}
        except (OSError, ValueError, KeyError, TypeError) as error:
            issue = ConfigIssue(str(self._path), "revoked", f"unreadable revocation list: {error}")
            raise ConfigError([issue]) from None

    def contains(self, jti: str) -> bool:
        """Whether `jti` is revoked (the file is re-read first if it changed)."""
        return self.first_revoked((jti,)) is not None

    def first_revoked(self, jtis: Iterable[str]) -> str | None:
        """The first of `jtis` that is revoked, or None: one look at the file for a whole token chain."""
        self._refresh()
        return next((jti for jti in jtis if jti in self._revoked), None)

    def snapshot(self) -> frozenset[str]:
        """Every revoked id, as the file holds them now (for replicas comparing lists)."""
        self._refresh()
        return frozenset(self._revoked)

    def _refresh(self) -> None:
        current = stamp(self._path)
        if current != self._stamp:
            # A file being replaced by another writer: keep the last good list, retry on the next request.
            with contextlib.suppress(ConfigError):
                self._revoked = self._read()
                self._stamp = current

    def revoke(self, jti: str) -> None:
        """Add `jti` and persist (temp file + rename, so a crash never leaves half a file)."""
        self.revoke_all((jti,))

    def revoke_all(self, jtis: Iterable[str]) -> None:
        """Add every one of `jtis` with one write (revocations another replica made)."""
        with locked(self._path):
            revoked = self._revoked | self._read() | set(jtis)
            write_atomically(self._path, json.dumps({"revoked": sorted(revoked)}, indent=1))
            self._revoked = revoked  # only once written: a reader never sees an id the file lacks
