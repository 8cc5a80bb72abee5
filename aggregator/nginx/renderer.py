"""Keeping nginx in step with the registered servers: render, validate, install, reload, debounced.

The registry owns an `NginxRenderer` and calls `schedule()` after every change (register, remove,
toggle, a hand edit of servers.yaml)::

    async with NginxRenderer(settings, lambda: registry.servers) as nginx:
        ...
        nginx.schedule()                # cheap, never blocks, safe to call in a burst
        outcome = await nginx.wait_applied()   # only when the caller must know the result

A burst of changes becomes one render at the end of a `reload_debounce` window, and nginx is
reloaded at most once per window, and only when the rendered text changed. A render that nginx
refuses keeps the running config; the reason is logged (`nginx.rejected`) and kept in
`NginxRenderer.last.error`.

With the decision cache on, the renderer also watches scopes.yml and the revocation list (every
`scopes_reload_interval` seconds) and schedules a render when either changes: the new config
carries a new cache generation, so nginx stops reusing allows made under the old files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup

from aggregator.config.files import stamp
from aggregator.config.settings import Settings
from aggregator.errors import NginxError
from aggregator.nginx.cache import watched_files
from aggregator.nginx.control import NginxControl
from aggregator.nginx.render import NginxPaths, render
from aggregator.registry.models import ServersFile

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one render-and-apply did."""

    changed: bool
    reloaded: bool
    passthrough: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def apply(
    settings: Settings,
    servers: ServersFile,
    control: NginxControl,
    *,
    reload: bool,
    loaded: str | None = None,
    force: bool = False,
) -> tuple[Applied, str]:
    """Render `servers`, install the text if it differs, and reload nginx if asked and needed (or `force`d).

    `loaded` is the text nginx last loaded, when known (else the installed file is taken to be
    it). Returns the outcome and the rendered text; raises `NginxError` when nginx refuses the
    config or cannot be reloaded. Blocking: run it in a worker thread from async code.
    """
    rendered = render(settings, servers, control.paths)
    for name, reason in rendered.skipped.items():
        logger.info("nginx.passthrough_skipped", extra={"server": name, "reason": reason})
    previous = loaded if loaded is not None else control.installed()
    control.install(rendered.text)
    changed = rendered.text != previous
    config = str(control.paths.config_file)
    reloading = reload and (changed or force)
    if reloading:
        control.reload()
        logger.info("nginx.reloaded", extra={"config": config, "passthrough": len(rendered.passthrough)})
    elif not changed:
        logger.info("nginx.unchanged", extra={"config": config})
    return Applied(changed, reloading, rendered.passthrough, rendered.skipped), rendered.text


class NginxRenderer:
    """Re-renders and reloads nginx on request, at most once per debounce window (an async context manager)."""

    def __init__(
        self,
        settings: Settings,
        servers: Callable[[], ServersFile],
        control: NginxControl | None = None,
    ) -> None:
        self._settings = settings
        self._servers = servers
        self.control = control or NginxControl(settings.nginx.binary, NginxPaths.from_settings(settings))
        self._debounce = settings.nginx.reload_debounce
        self._requested = 0
        self._applied = 0
        self._wakeup = anyio.Event()
        self._progress = anyio.Event()
        self._loaded: str | None = None
        self._tasks: TaskGroup | None = None
        self.last: Applied | None = None
        self.reloads = 0

    async def __aenter__(self) -> Self:
        # Until a reload succeeds, nginx is taken to run the installed config.
        self._loaded = await anyio.to_thread.run_sync(self.control.installed)
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._run)
        if self._settings.nginx.auth_cache_ttl > 0:
            self._tasks.start_soon(self._watch_generation)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        return await self._tasks.__aexit__(kind, error, traceback)

    def schedule(self) -> None:
        """Ask for a re-render; returns at once. Calls within one debounce window become one render."""
        self._requested += 1
        self._wakeup.set()

    async def wait_applied(self) -> Applied:
        """Wait until every `schedule()` made so far has been rendered (and reloaded, if it changed anything)."""
        target = self._requested
        while self._applied < target:
            await self._progress.wait()
        assert self.last is not None
        return self.last

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            # The window starts with the first request: later ones in it ride along.
            await anyio.sleep(self._debounce)
            self._wakeup = anyio.Event()
            target = self._requested
            self.last = await self._apply_once()
            self._applied = target
            self._progress.set()
            self._progress = anyio.Event()

    async def _watch_generation(self) -> None:
        """Schedule a render whenever a file the cache generation digests changes (edit, rename, delete)."""
        files = watched_files(self._settings)
        seen = [stamp(path) for path in files]
        while True:
            await anyio.sleep(self._settings.scopes_reload_interval)
            current = [stamp(path) for path in files]
            if current != seen:
                seen = current
                logger.info("nginx.cache_generation_changed", extra={"files": [str(path) for path in files]})
                self.schedule()

    async def _apply_once(self) -> Applied:
        try:
            servers = self._servers()
            outcome, text = await anyio.to_thread.run_sync(
                lambda: apply(self._settings, servers, self.control, reload=True, loaded=self._loaded)
            )
        except NginxError as error:
            return Applied(changed=False, reloaded=False, error=str(error))
        except Exception as error:  # per-task top level: a bug here must not stop future renders
            logger.exception("nginx.render_failed")
            return Applied(changed=False, reloaded=False, error=f"{type(error).__name__}: {error}")
        self._loaded = text
        if outcome.reloaded:
            self.reloads += 1
        return outcome
