"""The activity tab: headline numbers per upstream and a live tail of the audit log (newest first)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Static

from tui import formatting
from tui.models import ACTIVITY, LIST, Activity, AuditEntry, Headline, Snapshot
from tui.widgets.rows import Row, RowsTable

POLLING_TOOLS = frozenset({LIST, ACTIVITY, "healthcheck"})
"""What the console itself calls on every poll; hidden from the tail unless asked for."""


def is_polling(entry: AuditEntry, you: str) -> bool:
    """Whether `entry` is this console's own polling (lists and read-only admin calls by the same principal)."""
    if entry.principal != you:
        return False
    return entry.method != "tools/call" or entry.name in POLLING_TOOLS


def headline(activity: Activity) -> str:
    total = activity.total
    window = f"Last {activity.window_seconds:g} s"
    if not total.calls:
        return f"{window}: no calls."
    return f"{window}: {total.calls} calls · {_numbers(total)}"


def _numbers(item: Headline) -> str:
    return f"{formatting.rate(item.calls_per_second)} · errors {formatting.percent(item.error_rate)} · p95 " + (
        formatting.latency(item.p95_ms)
    )


class ActivityPane(Vertical):
    """Headline numbers and the audit tail; `h` shows or hides the console's own polling."""

    DEFAULT_CSS = """
    ActivityPane #headline, ActivityPane #tail-title {
        height: auto;
        padding: 0 1;
    }
    ActivityPane #tail-title {
        color: $text-muted;
    }
    ActivityPane #upstreams {
        height: auto;
        max-height: 7;
    }
    ActivityPane #tail {
        height: 1fr;
    }
    """

    BINDINGS = [Binding("h", "toggle_polling", "Own polling")]

    snapshot: reactive[Snapshot] = reactive(Snapshot)
    show_polling: reactive[bool] = reactive(False)

    def compose(self) -> ComposeResult:
        yield Static(id="headline")
        yield RowsTable("Upstream", "Calls", "Calls/s", "Errors", "p95", id="upstreams", cursor=False)
        yield Static(id="tail-title")
        yield RowsTable("Time", "Who", "Method", "Name", "Decision", "Outcome", "ms", id="tail")

    def watch_snapshot(self) -> None:
        self._show()

    def watch_show_polling(self) -> None:
        self._show()

    def _show(self) -> None:
        activity = self.snapshot.activity
        if activity is None:
            reason = self.snapshot.activity_error or "not loaded yet"
            self.query_one("#headline", Static).update(f"Activity unavailable: {reason}")
            self.query_one("#tail-title", Static).update("")
            self.query_one("#upstreams", RowsTable).show([])
            self.query_one("#tail", RowsTable).show([])
            return
        self.query_one("#headline", Static).update(
            headline(activity) if activity.audit_log else "The gateway's audit log is off."
        )
        upstreams = [_upstream_cells(name, item) for name, item in activity.upstreams]
        self.query_one("#upstreams", RowsTable).show(upstreams)
        entries = [e for e in activity.entries if self.show_polling or not is_polling(e, activity.you)]
        hidden = len(activity.entries) - len(entries)
        toggle = "h hides" if self.show_polling else f"{hidden} polling entries of this console hidden; h shows"
        self.query_one("#tail-title", Static).update(f"Audit log, newest first ({toggle})")
        self.query_one("#tail", RowsTable).show([_cells(entry) for entry in reversed(entries)])

    def action_toggle_polling(self) -> None:
        self.show_polling = not self.show_polling


def _upstream_cells(name: str, item: Headline) -> Row:
    return (
        name,
        str(item.calls),
        formatting.rate(item.calls_per_second),
        formatting.percent(item.error_rate),
        formatting.latency(item.p95_ms),
    )


def _cells(entry: AuditEntry) -> Row:
    decision = Text(entry.decision, style="green" if entry.decision == "allow" else "bold red")
    outcome = Text(entry.outcome, style="" if entry.outcome == "ok" else "yellow")
    return (
        formatting.audit_clock(entry.time),
        entry.principal,
        entry.method,
        entry.name or "",
        decision,
        outcome,
        formatting.latency(entry.latency_ms).removesuffix(" ms"),
    )
