"""Sibling disambiguation: which of one server's tools on the same object a request asks for.

Servers often export one tool per action on an object (`list_buckets`, `get_bucket`,
`create_bucket`, `delete_bucket`). Their descriptions are near-identical to the embedding model and
to BM25, so a request for "all my buckets" may rank `get_bucket` first. A tool's name says what it
does: its verb, and for a read whether it returns one thing or many (`get_task` / `get_tasks`).
A request says the same with its own verb ("remove", "rename", "what ... do I have").

`action_of_name` and `actions_of_query` map both to one of a few actions; `reorder` lets the tools
whose action agrees with the request's pass their own server's tools that are ranked close above
them. It only permutes a server's tools among the places they already hold: no tool of another
server moves, and no tool enters the list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Literal

Action = Literal["list", "get", "search", "create", "update", "delete", "stop"]

_NAME_VERBS: dict[str, Action] = {
    **dict.fromkeys(("list", "ls", "enumerate", "browse"), "list"),
    **dict.fromkeys(("get", "read", "describe", "retrieve", "fetch", "show", "view", "inspect", "info"), "get"),
    **dict.fromkeys(("search", "find", "query", "lookup", "filter"), "search"),
    **dict.fromkeys(("create", "add", "insert", "new", "make", "register", "put", "post"), "create"),
    **dict.fromkeys(("update", "edit", "modify", "patch", "set", "upsert", "rename", "change", "replace"), "update"),
    **dict.fromkeys(("delete", "remove", "drop", "destroy", "trash", "purge", "erase", "unregister"), "delete"),
    **dict.fromkeys(("cancel", "stop", "abort", "kill", "terminate"), "stop"),
}
# Words after the verb that name a facet of one thing rather than many things.
_NOT_PLURAL = frozenset(
    ("details", "settings", "status", "stats", "metrics", "contents", "analytics", "news", "series", "alias", "access")
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")

# A request's cues, first match in the text wins; many-cues then turn a "get" into a "list".
_CUE_WORDS: tuple[tuple[Action, str], ...] = (
    ("delete", r"\b(?:delete|remove|drop|destroy|trash|purge|erase|get rid of|unregister)\b"),
    ("stop", r"\b(?:cancel|stop|abort|kill|terminate)\b"),
    ("create", r"\b(?:create|add|insert|register|publish|file an?|set up an?|make an?|start an?|an? new)\b"),
    ("update", r"\b(?:update|edit|modify|change|rename|patch|upsert|mark|move|replace|set \w+ to)\b"),
    ("search", r"\b(?:search|find|look for|look through|look up|query|filter|matching|mention(?:s|ing)?)\b"),
    ("list", r"\b(?:list|enumerate|all|every|(?:which|what) (?:\w+ ){0,3}?\w+s (?:do|are|have|exist))\b"),
    ("get", r"\b(?:get|show|read|open|describe|retrieve|fetch|details?|info(?:rmation)?|what's|what is)\b"),
)
_QUERY_CUES = tuple((action, re.compile(pattern, re.IGNORECASE)) for action, pattern in _CUE_WORDS)
_MANY = re.compile(r"\b(?:all|every|each|list|which)\b", re.IGNORECASE)


@lru_cache(maxsize=8192)
def action_of_name(name: str) -> Action | None:
    """The action a tool's own name says it performs: `get_task` "get", `get_tasks` "list", `pods_list` "list".

    The first word of the name that is a known verb decides (names put the verb first or last);
    a read whose object, after the verb, is plural lists (before a verb, `pods_get`, the words
    are a namespace, plural or not). `None` when the name holds no known verb.
    """
    words = [word.lower() for word in _SEPARATORS.split(_CAMEL.sub(" ", name)) if word]
    for position, word in enumerate(words):
        action = _NAME_VERBS.get(word)
        if action is None:
            continue
        if action == "get" and _plural(words[position + 1 :]):
            return "list"
        return action
    return None


def _plural(objects: Sequence[str]) -> bool:
    words = [word for word in objects if word not in _NOT_PLURAL and word not in _NAME_VERBS]
    if not words:
        return False
    last = words[-1]
    return len(last) > 3 and last.endswith("s") and not last.endswith(("ss", "us", "is"))


def action_of_text(text: str) -> Action | None:
    """The action one request text asks for, by its first cue; `None` when it has none."""
    found: tuple[int, Action] | None = None
    for action, cue in _QUERY_CUES:
        match = cue.search(text)
        if match is not None and (found is None or match.start() < found[0]):
            found = (match.start(), action)
    if found is None:
        return None
    action = found[1]
    return "list" if action == "get" and _MANY.search(text) else action


def actions_of_query(texts: Iterable[str]) -> frozenset[Action]:
    """The actions a request asks for: one per text (a task's steps each have their own)."""
    return frozenset(action for text in texts if (action := action_of_text(text)) is not None)


def reorder(
    servers: Sequence[int], names: Sequence[str], scores: Sequence[float], wanted: frozenset[Action], bonus: float
) -> list[int]:
    """A new order of a ranked list (best first): each server's tools re-sorted among their own places.

    A tool whose name's action is in `wanted` counts `bonus` more when compared with its siblings
    (tools of the same server); the places each server holds stay the same. Returns the positions
    of the input in their new order.
    """
    if not wanted or bonus <= 0:
        return list(range(len(names)))
    places: dict[int, list[int]] = {}
    for position, server in enumerate(servers):
        places.setdefault(server, []).append(position)
    order = list(range(len(names)))
    for held in places.values():
        if len(held) < 2:
            continue
        adjusted = {p: scores[p] + (bonus if action_of_name(names[p]) in wanted else 0.0) for p in held}
        for place, position in zip(held, sorted(held, key=lambda p: (-adjusted[p], p)), strict=True):
            order[place] = position
    return order
