"""A small catalog of realistic tools on six servers, shared by the finder's tests."""

from __future__ import annotations

from collections.abc import Iterable

import mcp_types

from aggregator.search import ToolDocument

SERVERS = {
    "weather": "Forecasts and severe weather alerts from the national weather service.",
    "github": "Work with GitHub repositories, issues and pull requests.",
    "files": "Read and write files on the local disk.",
    "mail": "Send and search email.",
    "calendar": "Manage calendar events and meetings.",
    "stocks": "Stock market quotes and company financials.",
}

TOOLS: list[tuple[str, str, str, dict[str, str], tuple[str, ...]]] = [
    ("weather", "get_forecast", "Get the weather forecast for a city for the next days.", {"city": "City name"}, ()),
    ("weather", "get_alerts", "List active severe weather alerts for a US state.", {"state": "Two-letter code"}, ()),
    ("github", "create_issue", "Open a new issue in a repository.", {"repo": "owner/name", "title": "Title"}, ("dev",)),
    ("github", "list_pull_requests", "List open pull requests of a repository.", {"repo": "owner/name"}, ("dev",)),
    ("github", "search_code", "Search source code across repositories.", {"query": "Search terms"}, ("dev",)),
    ("files", "read_file", "Read the contents of a file.", {"path": "File path"}, ("fs",)),
    ("files", "write_file", "Create or overwrite a file with new content.", {"path": "File path"}, ("fs",)),
    ("files", "list_directory", "List the entries of a directory.", {"path": "Directory path"}, ("fs",)),
    ("mail", "send_email", "Send an email message to one or more recipients.", {"to": "Recipients"}, ()),
    ("mail", "search_inbox", "Search received email by sender or subject.", {"query": "Search terms"}, ()),
    ("calendar", "create_event", "Schedule a meeting or event in the calendar.", {"start": "Start time"}, ()),
    ("calendar", "list_events", "List upcoming calendar events.", {"days": "How many days ahead"}, ()),
    ("stocks", "get_quote", "Get the latest stock price for a ticker symbol.", {"ticker": "Symbol, e.g. AAPL"}, ()),
]


def make_document(
    server: str, tool: str, description: str, parameters: dict[str, str], tags: tuple[str, ...] = ()
) -> ToolDocument:
    """The document of `tool` as the gateway exports it: `<server>__<tool>`, built from an MCP `Tool`."""
    properties = {name: {"type": "string", "description": text} for name, text in parameters.items()}
    upstream_tool = mcp_types.Tool(
        name=tool, description=description, input_schema={"type": "object", "properties": properties}
    )
    return ToolDocument.from_tool(f"{server}__{tool}", server, upstream_tool, SERVERS[server], tags)


def catalog_documents() -> list[ToolDocument]:
    return [make_document(*row) for row in TOOLS]


def names(documents: Iterable[ToolDocument]) -> frozenset[str]:
    return frozenset(document.name for document in documents)
