"""An operator's verdicts on held definitions: approve (pin and serve) or reject (keep out), and the diff to judge by.

These work on the pin store alone, so the admin tools of a running gateway and
`mcp-aggregator tools approve|reject|diff` (which needs no running gateway) share them. Passing the
fingerprint shown by the diff makes the verdict apply to that definition only: if the upstream
changed the tool again in between, the verdict is refused instead of approving what was not seen.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Literal

from aggregator.errors import UnknownNameError
from aggregator.trust.definition import diff
from aggregator.trust.store import Held, Pin, Pins, PinStore, now

Verdict = Literal["approved", "rejected"]


def decide(
    store: PinStore, verdict: Verdict, server: str, tool: str, by: str, expected: str | None = None
) -> tuple[dict[str, Any], Pins]:
    """Approve or reject the held (or, to approve, the rejected) definition of `server`'s `tool`.

    Returns what was decided (server, tool, change, fingerprint, by) and the pins as written.
    Raises `UnknownNameError` naming the tool when nothing of it awaits this verdict.
    """

    def apply(pins: Pins) -> dict[str, Any]:
        entry = pins.get(server)
        held: Held | Pin | None = None
        if entry is not None:
            held = entry["held"].get(tool)
            if held is None and verdict == "approved":
                held = entry["rejected"].get(tool)
        if entry is None or held is None:
            # Suggest only the same server's held tools: the caller was checked for that server alone.
            waiting = list(entry["held"]) if entry is not None else []
            close = difflib.get_close_matches(tool, waiting, n=3, cutoff=0.6)
            raise UnknownNameError("held tool", f"{server}/{tool}", [f"{server}/{name}" for name in close])
        if expected is not None and held["fingerprint"] != expected:
            raise UnknownNameError(f"held definition of {server}/{tool} with fingerprint", expected, [])
        change = "changed" if tool in entry["pinned"] else "new"
        record: Pin = {"fingerprint": held["fingerprint"], "definition": held["definition"], "by": by, "at": now()}
        entry["held"].pop(tool, None)
        entry["rejected"].pop(tool, None)
        if verdict == "approved":
            entry["pinned"][tool] = record
        else:
            entry["rejected"][tool] = record
        return {"server": server, "tool": tool, "change": change, "fingerprint": held["fingerprint"], "by": by}

    return store.update(apply)


def held_tools(pins: Pins, visible: Callable[[str], bool] = lambda server: True) -> list[dict[str, Any]]:
    """Every held definition of the servers `visible` admits: why it is held, and its diff to the pinned one."""
    views = []
    for server, entry in sorted(pins.items()):
        if not visible(server):
            continue
        for tool, held in sorted(entry["held"].items()):
            pinned = entry["pinned"].get(tool)
            before = pinned["definition"] if pinned is not None else None
            views.append(
                {
                    "server": server,
                    "tool": tool,
                    "change": "new" if pinned is None else "changed",
                    "reason": held["reason"],
                    "findings": held["findings"],
                    "fingerprint": held["fingerprint"],
                    "pinned_fingerprint": pinned["fingerprint"] if pinned is not None else None,
                    "held_since": held["at"],
                    "diff": diff(before, held["definition"], label=f"{server}/{tool}"),
                }
            )
    return views


def transitions(before: Pins, after: Pins) -> list[tuple[str, str, Verdict]]:
    """(server, tool, verdict) for every definition that left `held` between two readings of the pins."""
    moved: list[tuple[str, str, Verdict]] = []
    for server, entry in before.items():
        now_entry = after.get(server)
        if now_entry is None:
            continue
        for tool, held in entry["held"].items():
            if tool in now_entry["held"]:
                continue
            pinned, rejected = now_entry["pinned"].get(tool), now_entry["rejected"].get(tool)
            if pinned is not None and pinned["fingerprint"] == held["fingerprint"]:
                moved.append((server, tool, "approved"))
            elif rejected is not None and rejected["fingerprint"] == held["fingerprint"]:
                moved.append((server, tool, "rejected"))
    return moved
