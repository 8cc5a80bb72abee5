"""Tool search: the gateway's `intelligent_tool_finder` when it has one, else a local match over tools/list.

The finder's arguments and answer differ between mcp-gateway-registry versions (`query` or
`natural_language_query`; a list or `{"results": [...]}`), so both are read from what the gateway
actually advertises and answers, not assumed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

import mcp_types as types

from tui.models import ToolMatch

SEPARATOR = "__"
QUERY_KEYS = ("natural_language_query", "query")
COUNT_KEYS = ("top_n_tools", "top_n", "limit", "top_k")
FUZZY_CUTOFF = 0.55


def server_of(tool_name: str) -> str:
    """The server part of an exported name (`weather__get_forecast` -> `weather`), for display only."""
    server, separator, _ = tool_name.partition(SEPARATOR)
    return server if separator else ""


def local_matches(query: str, tools: Iterable[types.Tool], limit: int = 25) -> tuple[ToolMatch, ...]:
    """Tools whose name or description contain every word of `query`; else names close to it.

    Words found in the name weigh more than words found in the description, so `forecast` ranks
    `weather__get_forecast` above a tool that merely mentions forecasts.
    """
    words = query.lower().split()
    if not words:
        return ()
    matches = []
    for tool in tools:
        name = tool.name.lower()
        text = f"{name} {(tool.description or '').lower()}"
        if all(word in text for word in words):
            score = 1.0 + sum(0.5 for word in words if word in name)
        else:
            score = _closeness(query.lower(), name)
            if score < FUZZY_CUTOFF:
                continue
        matches.append(ToolMatch(tool.name, server_of(tool.name), tool.description or "", round(score, 3), tool))
    matches.sort(key=lambda match: (-match.score, match.name))
    return tuple(matches[:limit])


def _closeness(query: str, name: str) -> float:
    """How close `query` is to `name` or to its part after the server prefix (0..1)."""
    _, _, bare = name.rpartition(SEPARATOR)
    return max(difflib.SequenceMatcher(None, query, candidate).ratio() for candidate in (name, bare))


def finder_arguments(finder: types.Tool, query: str, count: int = 10) -> dict[str, Any]:
    """Arguments for the gateway's finder, shaped by its advertised input schema."""
    properties: dict[str, Any] = (finder.input_schema or {}).get("properties", {})
    query_key = next((key for key in QUERY_KEYS if key in properties), QUERY_KEYS[-1])
    arguments: dict[str, Any] = {query_key: query}
    if count_key := next((key for key in COUNT_KEYS if key in properties), None):
        arguments[count_key] = count
    return arguments


def finder_matches(answer: dict[str, Any], tools: Sequence[types.Tool]) -> tuple[ToolMatch, ...]:
    """The finder's answer as matches; names are mapped onto the exported names in tools/list."""
    items: object = next((answer[key] for key in ("results", "result", "tools", "matches") if key in answer), [])
    by_name = {tool.name: tool for tool in tools}
    matches = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        name = str(item.get("tool_name") or item.get("name") or item.get("tool") or "")
        server = str(item.get("service_name") or item.get("server_name") or item.get("server") or "")
        if name not in by_name and f"{server}{SEPARATOR}{name}" in by_name:
            name = f"{server}{SEPARATOR}{name}"
        tool = by_name.get(name)
        description = str(item.get("description") or (tool.description if tool else "") or "")
        score = next((item[key] for key in ("overall_similarity_score", "score", "similarity") if key in item), 0)
        matches.append(ToolMatch(name, server or server_of(name), description, float(score or 0), tool))
    return tuple(matches)
