"""The tool index with the real model and a real LanceDB directory: ranking, permissions, sync, restart, fallback."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from aggregator.search import DuplicateToolError, Embedder, IndexClosedError, SearchMode, ToolDocument, ToolIndex
from aggregator.search.documents import name_words
from tests.search.catalog import make_document, names

pytestmark = pytest.mark.anyio

DEADLINE = 60.0


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("what will the weather be like in Paris tomorrow", "weather__get_forecast"),
        ("open a bug report in our repo", "github__create_issue"),
        ("email the team about the release", "mail__send_email"),
        ("how much is an Apple share worth right now", "stocks__get_quote"),
        ("put a meeting with Ana on my agenda for Monday", "calendar__create_event"),
    ],
)
async def test_the_relevant_tool_ranks_first(
    shared_index: ToolIndex, catalog: list[ToolDocument], query: str, expected: str
) -> None:
    result = await shared_index.search(query, allowed=names(catalog))
    assert result.mode == "hybrid" and result.note is None
    assert result.hits[0].name == expected
    assert result.hits[0].input_schema["properties"]


async def test_a_task_finds_a_tool_for_each_step(shared_index: ToolIndex, catalog: list[ToolDocument]) -> None:
    result = await shared_index.search(
        "Check the forecast for Berlin, then email it to my boss and save a copy to a file", allowed=names(catalog)
    )
    found = {hit.name for hit in result.hits}
    assert {"weather__get_forecast", "mail__send_email", "files__write_file"} <= found


async def test_a_restricted_caller_gets_k_allowed_results_and_never_a_forbidden_one(
    shared_index: ToolIndex, catalog: list[ToolDocument]
) -> None:
    index = shared_index
    allowed = frozenset({"mail__send_email", "calendar__list_events", "files__read_file"})
    for query in ["github__create_issue", "create issue", "github", "open a github issue", "weather forecast"]:
        result = await index.search(query, allowed=allowed, top_k=3)
        assert {hit.name for hit in result.hits} == allowed, query  # prefilter: still k results, only allowed ones
    for query, servers, tags in [
        ("github__create_issue", ["github"], None),
        ("read a file", None, ["dev"]),
        ("create issue", ["mail", "github"], ["dev"]),
    ]:
        result = await index.search(query, allowed=allowed, servers=servers, tags=tags, top_k=5)
        assert {hit.name for hit in result.hits} <= allowed, query
    only_files = await index.search("github issue", allowed=names(catalog), tags=["fs"], top_k=10)
    assert {hit.name.split("__")[0] for hit in only_files.hits} == {"files"}
    nothing = await index.search("weather", allowed=[], top_k=5)
    assert nothing.hits == ()


async def test_no_query_reveals_a_forbidden_tool(shared_index: ToolIndex, catalog: list[ToolDocument]) -> None:
    allowed = names(catalog[::3])
    methods: tuple[SearchMode, ...] = ("hybrid", "full-text")
    for document in catalog:
        for query in (document.name, document.description, name_words(document.tool_label)):
            for method in methods:
                result = await shared_index.search(query, allowed=allowed, top_k=10, method=method)
                assert {hit.name for hit in result.hits} <= allowed, (query, method)


async def test_catalog_changes_show_up_without_a_rebuild_and_unchanged_tools_are_not_reembedded(
    index: ToolIndex, embedder: Embedder, catalog: list[ToolDocument]
) -> None:
    before = embedder.documents_encoded
    again = await index.sync(catalog)
    assert (again.unchanged, again.embedded, again.changed) == (len(catalog), 0, False)
    assert embedder.documents_encoded == before

    added = make_document("weather", "get_air_quality", "Get the air pollution index of a city.", {"city": "City"})
    changed = make_document("stocks", "get_quote", "Get the dividend history of a company.", {"ticker": "Symbol"})
    kept = [d for d in catalog if d.name not in {"mail__send_email", "stocks__get_quote"}]
    report = await index.sync([*kept, added, changed])
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, len(kept))
    known_texts = {text for document in catalog for text in document.views()}
    new_texts = (set(added.views()) | set(changed.views())) - known_texts  # vectors are stored per text
    assert report.embedded == len(new_texts) == embedder.documents_encoded - before  # nothing else re-embedded
    everyone = names([*kept, added, changed, *catalog])
    assert (await index.search("air pollution", allowed=everyone)).hits[0].name == "weather__get_air_quality"
    assert (await index.search("dividends paid", allowed=everyone)).hits[0].name == "stocks__get_quote"
    assert "mail__send_email" not in {h.name for h in (await index.search("send an email", allowed=everyone)).hits}


async def test_a_new_index_on_the_same_directory_resyncs_with_zero_reembeds(
    tmp_path: Path, embedder: Embedder, catalog: list[ToolDocument]
) -> None:
    async with ToolIndex(tmp_path / "db", embedder) as first:
        assert (await first.sync(catalog)).embedded > 0
    before = embedder.documents_encoded
    async with ToolIndex(tmp_path / "db", embedder) as second:
        assert second.size == len(catalog)
        report = await second.sync(catalog)
        assert (report.added, report.updated, report.removed, report.embedded, report.pending) == (0, 0, 0, 0, 0)
        result = await second.search("weather forecast", allowed=names(catalog))
        assert (result.mode, result.hits[0].name) == ("hybrid", "weather__get_forecast")
    assert embedder.documents_encoded == before


async def test_full_text_answers_before_the_model_is_loaded_and_says_so(
    tmp_path: Path, catalog: list[ToolDocument]
) -> None:
    cold = Embedder()
    async with ToolIndex(tmp_path / "db", cold, load_model=False) as index:
        report = await index.sync(catalog)
        assert report.embedded == 0 and report.pending > 0
        result = await index.search("weather forecast for a city", allowed=names(catalog))
        assert result.mode == "full-text"
        assert result.note is not None and "loading" in result.note
        assert result.hits[0].name == "weather__get_forecast"
        forbidden = await index.search("weather__get_forecast", allowed={"mail__send_email"})
        assert [hit.name for hit in forbidden.hits] in ([], ["mail__send_email"])

        await cold.load()  # the index's background task sees the model and embeds what the sync stored
        with anyio.fail_after(DEADLINE):
            await index.wait_embedded()
        assert index.pending == 0 and cold.documents_encoded == report.pending
        result = await index.search("weather forecast for a city", allowed=names(catalog))
        assert (result.mode, result.note, result.hits[0].name) == ("hybrid", None, "weather__get_forecast")


async def test_full_text_restricts_large_and_small_allowed_sets_before_the_cut(tmp_path: Path) -> None:
    many = [make_document("files", f"read_log_{n}", f"Read log file number {n}.", {"path": "Path"}) for n in range(600)]
    async with ToolIndex(tmp_path / "db", Embedder(), load_model=False) as index:
        await index.sync(many)
        for allowed in (names(many[::2]), names(many[:7])):  # 300 names: over-fetch and filter; 7: prefilter
            result = await index.search("read log file", allowed=allowed, top_k=20)
            assert len(result.hits) == min(20, len(allowed))
            assert {hit.name for hit in result.hits} <= allowed


async def test_misuse_raises_gateway_errors(tmp_path: Path, catalog: list[ToolDocument]) -> None:
    index = ToolIndex(tmp_path / "db", Embedder(), load_model=False)
    with pytest.raises(IndexClosedError):
        await index.search("anything", allowed=names(catalog))
    async with index:
        with pytest.raises(DuplicateToolError, match="weather__get_forecast"):
            await index.sync([catalog[0], catalog[0]])
