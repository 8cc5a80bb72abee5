"""The registered servers: servers.yaml, changed safely and watched for hand edits.

Every change is made to the file's raw YAML (so `${VAR}` references stay references and no secret
is ever written), validated as a whole, and written in place: only the keys that changed are
rewritten, the operator's comments, order and formatting stay (`edit_yaml`). The new text goes to
a temporary file, flushed and renamed over the original: a crash leaves the old file or the new
one, never half of one. Writers are serialised by a lock in this process and an `flock` on
`servers.yaml.lock` beside it, for several processes: the one rendezvous every replica and the CLI
find without configuration (and that works over NFS). It is never deleted (a waiter on a deleted
lock file and a newcomer on a new one would both hold "the" lock); the repository git-ignores it.
A hand edit is picked up within `interval` seconds; a broken one is reported (file, line, reason)
and the last good state keeps serving.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import yaml

from aggregator.config.files import locked, stamp, write_atomically
from aggregator.config.yamlfile import YamlDocument, edit_yaml, read_yaml
from aggregator.errors import ConfigError
from aggregator.registry.models import ServersFile, validate_servers

logger = logging.getLogger(__name__)

RawServers = dict[str, Any]
"""The `servers:` mapping as written in the file (before `${VAR}` expansion)."""
_NOT_IN_PLACE = "a round trip of this YAML would not read back the same, so comments and layout were not kept"


class Registry:
    """The servers file and the last good state read from it."""

    def __init__(
        self,
        path: Path,
        current: ServersFile,
        on_change: Callable[[ServersFile], Awaitable[None]],
        written: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.current = current
        self.error: str | None = None
        self._on_change = on_change
        self._written = written
        """Told after each change made through `change` (not hand edits): replicas share those (`cluster`)."""
        self._lock = anyio.Lock()
        self._stamp = stamp(path)

    async def change(self, edit: Callable[[RawServers], None], environ: Mapping[str, str] | None = None) -> ServersFile:
        """Apply `edit` to the raw `servers:` mapping, validate, write atomically, then apply it.

        `edit` raises a `GatewayError` to refuse; a result that does not validate raises
        `ConfigError` and leaves the file untouched. `environ` fills `${VAR}` references while
        validating (default: this process's environment; the CLI's importer passes placeholders
        for variables the gateway's environment will hold).
        """
        async with self._lock:
            servers = await anyio.to_thread.run_sync(self._change_file, edit, environ)
            self.current = servers
            self.error = None
        if self._written is not None:
            self._written()
        await self._on_change(servers)
        return servers

    def _change_file(self, edit: Callable[[RawServers], None], environ: Mapping[str, str] | None) -> ServersFile:
        with locked(self.path):
            text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
            document = read_yaml(self.path) if text else YamlDocument(self.path, {})
            data = document.data if isinstance(document.data, dict) else {}
            raw: RawServers = copy.deepcopy(dict(data.get("servers") or {}))
            edit(raw)
            updated = {**data, "servers": raw}
            servers = validate_servers(YamlDocument(self.path, updated), environ)
            write_atomically(self.path, self._edited(text, data, updated))
            self._stamp = stamp(self.path)
        return servers

    def _edited(self, text: str, before: dict[str, Any], after: dict[str, Any]) -> str:
        """The file's new text: edited in place (comments and layout kept), else written whole."""
        if (edited := edit_yaml(text, before, after)) is not None:
            return edited
        logger.warning("registry.rewritten_whole", extra={"file": str(self.path), "reason": _NOT_IN_PLACE})
        return yaml.safe_dump(after, sort_keys=False)

    async def watch(self, interval: float) -> None:
        """Pick up hand edits: poll the file's stamp every `interval` seconds."""
        while True:
            await anyio.sleep(interval)
            async with self._lock:
                current = stamp(self.path)
                if current == self._stamp:
                    continue
                self._stamp = current
                try:
                    servers = await anyio.to_thread.run_sync(_load, self.path)
                except ConfigError as error:
                    self.error = str(error)
                    logger.error("registry.reload_failed", extra={"file": str(self.path), "error": str(error)})
                    continue
                self.current = servers
                self.error = None
            logger.info("registry.reloaded", extra={"file": str(self.path), "servers": len(servers.servers)})
            await self._on_change(servers)


def _load(path: Path) -> ServersFile:
    return validate_servers(read_yaml(path))


def current_raw(path: Path) -> RawServers:
    """A copy of the raw `servers:` mapping of the servers file at `path` as it is now (empty if none)."""
    document = read_yaml(path) if path.exists() else YamlDocument(path, {})
    data = document.data if isinstance(document.data, dict) else {}
    return copy.deepcopy(dict(data.get("servers") or {}))


async def picked_up_by_watchers(servers: ServersFile) -> None:
    """A CLI's registry: running gateways notice the new file themselves (hot reload), nothing to apply."""
