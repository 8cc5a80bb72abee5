"""The audit log: one JSON line per decision and per call, to a rotating file. Never a secret."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path
from typing import Any

from aggregator.policy.principal import Principal


class AuditLog:
    """Appends `{"time", "principal", "client", "client_id", "method", "name", "decision", ...}` lines to `path`.

    `client` is the calling program as it introduced itself (MCP `clientInfo`: `name/version`), or
    null when it did not; `client_id` is the OAuth client of the principal's token.
    """

    def __init__(self, path: Path | None, max_bytes: int = 10_000_000, backups: int = 5) -> None:
        self._logger = logging.getLogger(f"aggregator.audit.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self._logger.addHandler(handler)

    def record(
        self,
        principal: Principal,
        method: str,
        name: str | None,
        decision: str,
        *,
        client: str | None = None,
        **fields: Any,
    ) -> None:
        """Write one entry; `decision` is `allow` or `deny`, `fields` add upstream, latency, outcome."""
        if self.path is None:
            return
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
            "principal": principal.subject,
            "client": client,
            "client_id": principal.client_id,
            "auth": principal.auth_method.value,
            "method": method,
            "name": name,
            "decision": decision,
            **fields,
        }
        self._logger.info(json.dumps(entry, separators=(",", ":"), default=str))

    def close(self) -> None:
        for handler in list(self._logger.handlers):
            handler.close()
            self._logger.removeHandler(handler)
