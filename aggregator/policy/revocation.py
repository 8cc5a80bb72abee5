"""Revoked token ids (`jti`), persisted as a JSON file so a revocation survives restarts."""

from __future__ import annotations

import json
from pathlib import Path

from aggregator.errors import ConfigError, ConfigIssue
from aggregator.files import locked, write_atomically


class RevocationList:
    """The set of revoked `jti`s, read at start and written atomically on every change."""

    def __init__(self, path: Path) -> None:
        self._path = path
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
        return jti in self._revoked

    def revoke(self, jti: str) -> None:
        """Add `jti` and persist (temp file + rename, so a crash never leaves half a file)."""
        with locked(self._path):
            self._revoked |= self._read()
            self._revoked.add(jti)
            write_atomically(self._path, json.dumps({"revoked": sorted(self._revoked)}, indent=1))
