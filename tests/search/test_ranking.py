"""Ranking arithmetic on a snapshot with made-up vectors (the vectorised code against a plain loop),
sibling disambiguation and the multi-step adjustments with the real model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mcp_types
import numpy as np
import pytest

from aggregator.search import Embedder, ToolDocument, ToolIndex
from aggregator.search.documents import text_hash
from aggregator.search.query import plan_query
from aggregator.search.ranking import (
    TODAY,
    Ranking,
    dense_scores,
    full_text_scores,
    fuse,
    ranked_rows,
    top,
    view_scores_by_text,
)
from aggregator.search.snapshot import Snapshot, build_snapshot
from tests.search.catalog import catalog_documents, names

MODEL = "test-model"
DIMENSION = 8


def random_snapshot(seed: int = 1) -> tuple[Snapshot, dict[str, np.ndarray]]:
    documents = {document.name: document for document in catalog_documents()}
    rng = np.random.default_rng(seed)
    texts = {text for document in documents.values() for text in (*document.views(), document.server_text())}
    vectors = {}
    for text in sorted(texts):
        vector = rng.standard_normal(DIMENSION).astype(np.float32)
        vectors[text_hash(MODEL, text)] = vector / np.linalg.norm(vector)
    return build_snapshot(documents, {}, vectors, MODEL, DIMENSION), vectors


def test_dense_scores_are_each_tools_best_view_plus_its_weighted_server() -> None:
    snapshot, vectors = random_snapshot()
    queries = np.random.default_rng(2).standard_normal((3, DIMENSION)).astype(np.float32)
    rows = np.array([0, 2, 3, 7, 11], dtype=np.intp)
    ranking = Ranking(server_weight=0.5)
    expected = []
    for row in rows:
        document = snapshot.documents[snapshot.names[row]]
        best_view = max(float((queries @ vectors[text_hash(MODEL, text)]).max()) for text in document.views())
        server = float((queries @ vectors[text_hash(MODEL, document.server_text())]).max())
        expected.append(best_view + 0.5 * server)
    np.testing.assert_allclose(dense_scores(snapshot, rows, queries, ranking), expected, rtol=1e-5)
    assert snapshot.pending == 0


def test_a_tool_without_vectors_scores_zero_and_is_reported_pending() -> None:
    documents = {document.name: document for document in catalog_documents()}
    snapshot = build_snapshot(documents, {}, {}, MODEL, DIMENSION)
    rows = np.arange(len(documents), dtype=np.intp)
    queries = np.ones((1, DIMENSION), dtype=np.float32)
    assert not dense_scores(snapshot, rows, queries, Ranking()).any()
    assert snapshot.pending == len({t for d in documents.values() for t in (*d.views(), d.server_text())})


def test_full_text_scores_keep_only_eligible_rows_and_fusion_orders_stably() -> None:
    snapshot, _ = random_snapshot()
    eligible = ["files__read_file", "mail__send_email"]
    rows = np.array(sorted(snapshot.rows[name] for name in eligible), dtype=np.intp)
    hits = {"mail__send_email": 4.0, "github__create_issue": 9.0}  # an ineligible hit is ignored
    scores = dict(zip((snapshot.names[row] for row in rows), full_text_scores(snapshot, rows, hits), strict=True))
    assert scores == {"mail__send_email": 1.0, "files__read_file": 0.0}
    fused = fuse(np.array([0.2, 0.2], dtype=np.float32), np.array([0.0, 0.0], dtype=np.float32), Ranking())
    assert top(fused, 5).tolist() == [0, 1]
    rrf = fuse(
        np.array([0.1, 0.9], dtype=np.float32), np.array([1.0, 0.0], dtype=np.float32), Ranking(fusion="rrf", rrf_k=60)
    )
    assert rrf[0] > rrf[1]  # first in full-text, second in dense, unmatched in full-text


def test_a_full_text_margin_stops_shared_words_lifting_a_tool_the_model_places_far_away() -> None:
    # The request is speech to text: the model prefers tool 0; tool 1 (text to speech) shares every word.
    dense = np.array([0.62, 0.55, 0.58], dtype=np.float32)
    full_text = np.array([0.40, 1.00, 0.00], dtype=np.float32)
    assert top(fuse(dense, full_text, Ranking()), 3).tolist()[0] == 1
    guarded = fuse(dense, full_text, Ranking(full_text_margin=0.05))
    assert top(guarded, 3).tolist() == [0, 2, 1]
    assert guarded[1] == dense[1]  # outside the margin the full-text half adds nothing


def storage_tool(name: str, description: str) -> ToolDocument:
    schema = {"type": "object", "properties": {"bucket": {"type": "string", "description": "Bucket name"}}}
    tool = mcp_types.Tool(name=name, description=description, input_schema=schema)
    return ToolDocument.from_tool(f"storage__{name}", "storage", tool, "Cloud object storage: buckets and their files.")


STORAGE = [
    storage_tool("list_buckets", "Return the names of the buckets in the account."),
    storage_tool("get_bucket", "Get a bucket's details: region, size, versioning and access policy."),
    storage_tool("create_bucket", "Create a new bucket."),
    storage_tool("delete_bucket", "Delete an empty bucket."),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "wanted", "before"),
    [
        ("show me all my storage buckets", "storage__list_buckets", "storage__get_bucket"),
        ("show the bucket named logs-2024", "storage__get_bucket", "storage__list_buckets"),
    ],
)
async def test_among_siblings_the_tool_whose_name_does_what_the_request_asks_comes_first(
    tmp_path: Path, embedder: Embedder, query: str, wanted: str, before: str
) -> None:
    documents = [*catalog_documents(), *STORAGE]
    async with ToolIndex(tmp_path / "index", embedder, ranking=TODAY) as index:
        await index.sync(documents)
        earlier = await index.search(query, allowed=names(documents))
        index.ranking = Ranking()
        now = await index.search(query, allowed=names(documents))
    assert earlier.hits[0].name == before  # the descriptions alone put the wrong sibling first
    assert now.hits[0].name == wanted
    assert {hit.name for hit in now.hits} == {hit.name for hit in earlier.hits}  # nothing new pulled in
    assert [hit.score for hit in now.hits] == [hit.score for hit in earlier.hits]  # a tool takes its place's score


def task_tool(server: str, name: str, description: str) -> ToolDocument:
    schema = {"type": "object", "properties": {"path": {"type": "string", "description": "File path"}}}
    tool = mcp_types.Tool(name=name, description=description, input_schema=schema)
    about = {
        "music": "Analyse music and audio recordings.",
        "media": "Convert and edit video and audio files.",
        "maps": "OpenStreetMap: places, addresses and routes.",
        "parking": "City parking payments.",
    }
    return ToolDocument.from_tool(f"{server}__{name}", server, tool, about[server])


TASK_TOOLS = [
    task_tool("music", "load", "Load an audio file and return its samples and sample rate."),
    task_tool("music", "beat_track", "Estimate the tempo and the beat positions of a loaded signal."),
    task_tool("music", "mfcc", "Compute Mel-frequency cepstral coefficients of a loaded signal."),
    task_tool("music", "chroma_cqt", "Compute a chromagram from a constant-Q transform."),
    task_tool("media", "convert_audio", "Convert an audio file to another format such as mp3 or wav."),
    task_tool("media", "trim_video", "Cut a video file to a time range."),
    task_tool("maps", "find_parking_facilities", "Find parking facilities near a location."),
    task_tool("maps", "find_nearby_places", "Find points of interest near a location."),
    task_tool("parking", "pay_parking", "Pay for a parking session with your plate number."),
    task_tool("parking", "parking_zones", "List the parking zones and their prices in a city."),
]
BEFORE = Ranking()  # both multi-step adjustments off


@pytest.mark.anyio
async def test_with_server_coherence_the_tools_of_the_server_a_task_needs_rise_together(
    tmp_path: Path, embedder: Embedder
) -> None:
    documents = [*catalog_documents(), *TASK_TOOLS]
    task = "Load the recording /music/song.wav, then track its beats and compute its MFCCs"
    async with ToolIndex(tmp_path / "index", embedder, ranking=BEFORE) as index:
        await index.sync(documents)
        before = await index.search(task, allowed=names(documents), top_k=4)
        index.ranking = replace(BEFORE, server_coherence=0.3)
        now = await index.search(task, allowed=names(documents), top_k=4)
    assert "media__convert_audio" in [hit.name for hit in before.hits]  # another server's audio tool sat among them
    assert {hit.name for hit in now.hits} == {"music__load", "music__beat_track", "music__mfcc", "music__chroma_cqt"}


@pytest.mark.anyio
async def test_with_step_coverage_a_four_step_task_gets_a_tool_for_each_step_in_its_top_five(
    tmp_path: Path, embedder: Embedder
) -> None:
    documents = [*catalog_documents(), *TASK_TOOLS]
    task = (
        "Get the weather forecast for Paris, the stock price of AAPL and my upcoming meetings, "
        "then email a summary to my boss"
    )
    async with ToolIndex(tmp_path / "index", embedder) as index:
        await index.sync(documents)
        evidence = await index.evidence(task, allowed=names(documents))
        vectors = await embedder.encode_queries(plan_query(task).texts)
        text_dense, text_server = view_scores_by_text(index.snapshot, evidence.rows, vectors)
        evidence = replace(evidence, text_dense=text_dense, text_server=text_server)

        def top_five(ranking: Ranking) -> list[str]:
            return [index.names[row] for row, _ in ranked_rows(index.snapshot, evidence, task, ranking, 5)]

        before, now = top_five(BEFORE), top_five(replace(BEFORE, step_coverage=1.0))
    assert "mail__send_email" not in before  # the last step's tool came sixth: a second weather tool took its place
    for tool in ("weather__get_forecast", "stocks__get_quote", "calendar__list_events", "mail__send_email"):
        assert tool in now


@pytest.mark.anyio
async def test_a_single_step_request_ranks_exactly_as_without_the_multi_step_adjustments(
    tmp_path: Path, embedder: Embedder
) -> None:
    documents = [*catalog_documents(), *TASK_TOOLS]
    query = "Where can I park near the Forbidden City?"
    assert plan_query(query).steps == ()
    async with ToolIndex(tmp_path / "index", embedder, ranking=BEFORE) as index:
        await index.sync(documents)
        before = await index.search(query, allowed=names(documents), top_k=6)
        index.ranking = replace(BEFORE, server_coherence=1.0, step_coverage=1.0)
        now = await index.search(query, allowed=names(documents), top_k=6)
    assert now.hits == before.hits
