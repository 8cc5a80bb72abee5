"""Documents and query plans: what gets indexed for a tool, when its hash changes, how a task is split."""

from __future__ import annotations

from dataclasses import replace

import mcp_types

from aggregator.search import ToolDocument
from aggregator.search.documents import name_words, negative_clauses, without_negative_clauses
from aggregator.search.query import plan_query
from tests.search.catalog import make_document


def test_names_become_words() -> None:
    assert name_words("get_current_stock_price") == "get current stock price"
    assert name_words("getStockPrice") == "get Stock Price"
    assert name_words("mcp-server-chart") == "mcp server chart"


def test_from_tool_keeps_what_a_caller_needs() -> None:
    tool = mcp_types.Tool(name="get_forecast", title="Forecast", description="Get a forecast.", input_schema={})
    document = ToolDocument.from_tool("weather__get_forecast", "weather", tool, "Weather service", ["outdoor"])
    assert (document.name, document.server, document.title, document.tags) == (
        "weather__get_forecast",
        "weather",
        "Forecast",
        ("outdoor",),
    )
    assert document.text() == "weather: get forecast: Forecast. Get a forecast."


def test_full_text_covers_parameters_server_and_tags_but_the_embedded_text_stays_short() -> None:
    document = make_document("stocks", "get_quote", "Get the latest price.", {"ticker": "Symbol, e.g. AAPL"}, ("fin",))
    assert "AAPL" in document.search_text()
    assert "Stock market quotes" in document.search_text()
    assert "fin" in document.search_text().split()
    assert "AAPL" not in document.text()
    assert document.views()[:2] == (document.text(), "stocks: get quote")


def test_content_hash_follows_content_and_model_not_key_order() -> None:
    document = make_document("files", "read_file", "Read a file.", {"path": "Path", "encoding": "Encoding"})
    reordered = replace(document, input_schema=dict(reversed(document.input_schema.items())))
    assert document.content_hash("m") == reordered.content_hash("m")
    assert document.content_hash("m") != document.content_hash("other-model")
    changed = replace(document, description="Read a whole file.")
    assert document.content_hash("m") != changed.content_hash("m")


def test_a_task_is_split_into_steps_and_a_short_query_is_not() -> None:
    assert plan_query("weather in Paris").steps == ()
    plan = plan_query("Find the trending repositories, read the top one's wiki and write a summary to /tmp/a.md.")
    assert plan.steps == ("Find the trending repositories", "read the top one's wiki", "write a summary to /tmp/a.md")
    assert plan.texts[0] == plan.text
    assert plan_query("a, b and c", split_steps=False).steps == ()


def test_negative_clauses_are_found_and_can_be_taken_out_of_a_description() -> None:
    description = "Read the value of one key. Not for listing many keys; use list_keys for that."
    assert negative_clauses(description) == ["Not for listing many keys; use list_keys for that."]
    assert without_negative_clauses(description) == "Read the value of one key."
    pointer = "Search articles about variants. For variant database records, use variant_searcher instead."
    assert without_negative_clauses(pointer) == "Search articles about variants."
    cut = "Search variant records (frequency, significance) - NOT for articles about variants! Example: x."
    assert without_negative_clauses(cut) == "Search variant records (frequency, significance). Example: x."
    plain = "Fetch version 1.2.3 of a package... or the latest."
    assert negative_clauses(plain) == [] and without_negative_clauses(plain) == plain
