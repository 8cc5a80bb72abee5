"""Revoked token ids (`jti`), persisted as a JSON file so a revocation survives restarts."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from aggregator.errors import ConfigError, ConfigIssue


class RevocationList:
    """The set of revoked `jti`s, read at start and written atomically on every change."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._revoked: set[str] = set()
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self._revoked = {str(jti) for jti in data["revoked"]}
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise ConfigError([ConfigIssue(str(path), "revoked", f"unreadable revocation list: {error}")]) from None

    def contains(self, jti: str) -> bool:
        return jti in self._revoked

    def revoke(self, jti: str) -> None:
        """Add `jti` and persist (temp file + rename, so a crash never leaves half a file)."""
        self._revoked.add(jti)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self._path.parent, delete=False, encoding="utf-8") as handle:
            json.dump({"revoked": sorted(self._revoked)}, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, self._path)
