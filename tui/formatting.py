"""How values look on screen: latencies, clock times (UTC), rates, health states."""

from __future__ import annotations

import time

from rich.text import Text

EMPTY = "—"
TRANSPORTS = {"streamable-http": "http", "sse": "sse", "stdio": "stdio"}
STATE_STYLES = {
    "healthy": "green",
    "degraded": "yellow",
    "connecting": "cyan",
    "unhealthy": "bold red",
    "auth-expired": "bold red",
    "disabled": "dim",
}


def latency(milliseconds: float | None) -> str:
    if milliseconds is None:
        return EMPTY
    return f"{milliseconds:.0f} ms" if milliseconds >= 100 else f"{milliseconds:.1f} ms"


def clock(epoch: float | None) -> str:
    """A wall-clock time as HH:MM:SS in UTC, the audit log's time zone."""
    return EMPTY if epoch is None else time.strftime("%H:%M:%S", time.gmtime(epoch))


def audit_clock(timestamp: str) -> str:
    """HH:MM:SS of an audit-log time (`2026-11-24T23:16:41.123Z`)."""
    return timestamp[11:19] if len(timestamp) >= 19 else timestamp or EMPTY


def transport(name: str) -> str:
    return TRANSPORTS.get(name, name)


def state(name: str) -> Text:
    return Text(name, style=STATE_STYLES.get(name, ""))


def enabled(flag: bool) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="dim")


def rate(per_second: float) -> str:
    return f"{per_second:.2f}/s"


def percent(fraction: float) -> str:
    return f"{fraction * 100:.0f}%" if fraction >= 0.01 or fraction == 0 else "<1%"


def one_line(text: str | None, width: int = 60) -> str:
    """The first line of `text`, cut to `width` characters."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"
