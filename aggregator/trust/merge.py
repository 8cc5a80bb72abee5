"""How pin decisions made on another replica combine with this replica's, tool by tool.

A tool's `Slice` is what the pin store holds for it: its pinned, held and rejected definitions
(any of them absent). Replicas share only what changed (`changes`), never a whole slice, so a
replica that still holds an old pin never pushes it back over a newer approval. `merge(base,
incoming)` is the one rule, used both on the record in Redis and on the local pin store:

    pinned P (an approval, or on_change warn/accept)   replaces a pin of another fingerprint;
                                                        ends a hold or a rejection of P
    pinned P (a server's first listing)                 only where nothing is known of the tool yet
    rejected R                                          unless R is pinned (approved since); ends a hold of R
    held H                                              unless H is pinned, rejected or held already

So a stale hold never undoes a verdict, and a replica starting with an empty pin store cannot
approve by its "first listing" what the others hold or rejected.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from aggregator.trust.definition import fingerprint
from aggregator.trust.store import Held, Pin, Pins, server_pins

MAX_NAME_CHARACTERS = 256
MAX_RECORD_CHARACTERS = 1024 * 1024
"""A shared record longer than this is ignored (and logged): no tool definition is that long."""
FIRST_LISTING = "gateway (pinned)"
"""`by` of a pin made by a server's first listing (`Gate`)."""
KINDS = ("pinned", "rejected", "held")


class Slice(TypedDict, total=False):
    """One tool's entries in the pin store."""

    pinned: Pin
    held: Held
    rejected: Pin


_SLICE = TypeAdapter(Slice)


def slice_of(pins: Pins, server: str, tool: str) -> Slice:
    """What `pins` holds for `server`'s `tool`."""
    entry = pins.get(server)
    found: Slice = {}
    if entry is not None:
        for kind in KINDS:
            if (record := entry[kind].get(tool)) is not None:  # type: ignore[literal-required]
                found[kind] = record  # type: ignore[literal-required]
    return found


def put(pins: Pins, server: str, tool: str, part: Slice) -> None:
    """Make `pins` hold exactly `part` for `server`'s `tool`."""
    entry = server_pins(pins, server)
    for kind in KINDS:
        record = part.get(kind)
        if record is None:
            entry[kind].pop(tool, None)  # type: ignore[literal-required]
        else:
            entry[kind][tool] = record  # type: ignore[literal-required]


def merge(base: Slice, incoming: Slice) -> Slice:
    """`base` with the decisions of `incoming` applied by the rules above."""
    result: Slice = dict(base)  # type: ignore[assignment]
    pin = incoming.get("pinned")
    if pin is not None and (pin["by"] != FIRST_LISTING or not result):
        if _print(result, "pinned") != pin["fingerprint"]:
            result["pinned"] = pin
        _end(result, "held", pin["fingerprint"])
        _end(result, "rejected", pin["fingerprint"])
    rejected = incoming.get("rejected")
    if rejected is not None and _print(result, "pinned") != rejected["fingerprint"]:
        if _print(result, "rejected") != rejected["fingerprint"]:
            result["rejected"] = rejected
        _end(result, "held", rejected["fingerprint"])
    held = incoming.get("held")
    if held is not None and held["fingerprint"] not in {_print(result, kind) for kind in KINDS}:
        result["held"] = held
    return result


def changes(before: Pins, after: Pins) -> dict[tuple[str, str], Slice]:
    """The entries `after` has that `before` had not (another fingerprint, or none), by (server, tool)."""
    found: dict[tuple[str, str], Slice] = {}
    for server, entry in after.items():
        for kind in KINDS:
            for tool, record in entry[kind].items():  # type: ignore[literal-required]
                if _print(slice_of(before, server, tool), kind) != record["fingerprint"]:
                    found.setdefault((server, tool), {})[kind] = record  # type: ignore[literal-required]
    return found


def field_of(server: str, tool: str) -> str:
    """The Redis hash field of a tool: JSON, so no server or tool name can be mistaken for another."""
    return json.dumps([server, tool], ensure_ascii=True, separators=(",", ":"))


def encode(part: Slice) -> str:
    return json.dumps(part, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def decode(field: str, value: str) -> tuple[str, str, Slice]:
    """(server, tool, slice) of a shared record; `ValueError` saying why when it is not one this replica applies.

    Every definition must match its fingerprint: a record cannot pin one definition under another's name.
    """
    if len(value) > MAX_RECORD_CHARACTERS or len(field) > 4 * MAX_NAME_CHARACTERS:
        raise ValueError("the record is too long")
    names: Any = json.loads(field)
    if not (isinstance(names, list) and len(names) == 2 and all(_name(name) for name in names)):
        raise ValueError("the field is not a [server, tool] pair")
    try:
        part = _SLICE.validate_json(value, strict=True)
    except ValidationError as error:
        raise ValueError(f"the record is malformed: {error.errors()[0]['msg']}") from None
    for kind in KINDS:
        record: Pin | Held | None = part.get(kind)  # type: ignore[assignment]
        if record is not None and fingerprint(record["definition"]) != record["fingerprint"]:
            raise ValueError(f"the {kind} definition does not match its fingerprint")
    return names[0], names[1], part


def _name(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARACTERS


def _print(part: Slice, kind: str) -> str | None:
    record: Pin | Held | None = part.get(kind)  # type: ignore[assignment]
    return record["fingerprint"] if record is not None else None


def _end(part: Slice, kind: str, print_: str) -> None:
    if _print(part, kind) == print_:
        part.pop(kind)  # type: ignore[misc]
