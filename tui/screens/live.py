"""The base of screens that show live gateway state, which the app hands down as attributes."""

from __future__ import annotations

from textual.reactive import reactive
from textual.screen import Screen

from tui.link import LinkState
from tui.models import Progress, Snapshot


class LiveScreen(Screen[None]):
    """A screen the app keeps up to date: the latest poll, the link's state, long-operation progress."""

    snapshot: reactive[Snapshot] = reactive(Snapshot, bindings=True)
    link_state: reactive[LinkState | None] = reactive(None)
    progress: reactive[Progress | None] = reactive(None)

    def __init__(self, snapshot: Snapshot, link_state: LinkState | None, progress: Progress | None = None) -> None:
        super().__init__()
        self.set_reactive(LiveScreen.snapshot, snapshot)
        self.set_reactive(LiveScreen.link_state, link_state)
        self.set_reactive(LiveScreen.progress, progress)
