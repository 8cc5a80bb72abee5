"""The activity tab: headline numbers per upstream and a live tail of the audit log (newest first).

The tail fits 80 columns: one result column (allowed and ok, the error, or denied and why), the
call (the tool, prompt or resource; else the method), who, and the latency; long values are cut.
The gateway leaves the console's own calls out of the headline numbers (by its client name).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Static

from tui import formatting
from tui.models import ACTIVITY, LIST, Activity, AuditEntry, Headline, Snapshot
from tui.target import CLIENT_NAME
from tui.widgets.rows import Row, RowsTable

POLLING_TOOLS = frozenset({LIST, ACTIVITY, "healthcheck"})
"""What the console itself calls on every poll; hidden from the tail unless asked for."""
WIDTHS = {"result": 20, "call": 24, "who": 12}
"""The widest each column of the tail gets, so that all of it fits an 80-column terminal."""


def is_polling(entry: AuditEntry, you: str) -> bool:
    """Whether `entry` is a console's own polling (lists and read-only admin calls by it; by this
    principal where the gateway does not record the client)."""
    ours = entry.client.partition("/")[0] == CLIENT_NAME if entry.client else entry.principal == you
    return ours and (entry.method != "tools/call" or entry.name in POLLING_TOOLS)


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
        yield RowsTable("Time", "Result", "Call", "Who", "ms", id="tail")

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


def result(entry: AuditEntry) -> Text:
    """`ok`, the error (`UpstreamUnavailable`), or `denied` and why: one column, coloured by how it went."""
    outcome = entry.outcome.removesuffix("Error") if entry.outcome not in ("", "ok") else ""
    if entry.decision != "allow":
        return Text(_cut(f"denied {outcome}".strip(), WIDTHS["result"]), style="bold red")
    if outcome:
        return Text(_cut(outcome, WIDTHS["result"]), style="yellow")
    return Text("ok", style="green")


def _cells(entry: AuditEntry) -> Row:
    return (
        formatting.audit_clock(entry.time),
        result(entry),
        _cut(entry.name or entry.method, WIDTHS["call"]),
        _cut(entry.principal, WIDTHS["who"]),
        formatting.latency(entry.latency_ms).removesuffix(" ms"),
    )


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
