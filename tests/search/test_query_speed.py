"""The query path's savings keep what a caller sees: int8 query vectors stay near the float32 ones,
documents stay float32, and a query of any length is truncated, never refused."""

from __future__ import annotations

import numpy as np
import pytest

from aggregator.search import Embedder, ToolDocument, ToolIndex
from aggregator.search.query import plan_query
from tests.search.catalog import names

pytestmark = pytest.mark.anyio

SAMPLES = [
    "what will the weather be like in Paris tomorrow",
    "open an issue about the broken login page",
    "send the quarterly report to the finance team by email",
    "Look up the stock price of ACME, then put a review meeting on my calendar for Friday",
    "list the files in my home directory",
]


@pytest.fixture(scope="module")
async def float32() -> Embedder:
    """The packaged MiniLM with today's float32 query path, to compare the int8 one with."""
    model = Embedder(query_precision="float32")
    await model.load()
    return model


@pytest.fixture(scope="module")
async def int8() -> Embedder:
    model = Embedder(query_precision="int8")
    await model.load()
    return model


async def test_int8_query_vectors_stay_close_to_float32_ones(float32: Embedder, int8: Embedder) -> None:
    exact, quantised = await float32.encode_queries(SAMPLES), await int8.encode_queries(SAMPLES)
    cosines = (exact * quantised).sum(axis=1)
    assert cosines.min() > 0.95
    np.testing.assert_allclose(np.linalg.norm(quantised, axis=1), 1.0, atol=1e-5)


async def test_documents_are_still_encoded_in_float32(float32: Embedder, int8: Embedder) -> None:
    np.testing.assert_allclose(await int8.encode_documents(SAMPLES), await float32.encode_documents(SAMPLES), atol=1e-5)


async def test_int8_queries_rank_the_relevant_tool_first(
    tmp_path_factory: pytest.TempPathFactory, int8: Embedder, catalog: list[ToolDocument]
) -> None:
    async with ToolIndex(tmp_path_factory.mktemp("int8") / "index", int8) as index:
        await index.sync(catalog)
        await index.wait_embedded()
        result = await index.search("what will the weather be like in Paris tomorrow", allowed=names(catalog))
    assert result.mode == "hybrid" and result.hits[0].name == "weather__get_forecast"


async def test_a_10000_word_query_is_truncated_and_answered(
    tmp_path_factory: pytest.TempPathFactory, float32: Embedder, catalog: list[ToolDocument]
) -> None:
    words = ("forecast the weather in Lisbon for the coming rainy week " * 1000).split()
    query = " ".join(words)
    assert len(words) == 10_000
    capped = Embedder(query_precision="float32", query_tokens=32)
    await capped.load()
    long, head = await capped.encode_queries([query, " ".join(words[:60])])
    np.testing.assert_allclose(long, head, atol=1e-5)  # both cut to the same first 32 tokens
    async with ToolIndex(tmp_path_factory.mktemp("long") / "index", capped) as index:
        await index.sync(catalog)
        await index.wait_embedded()
        result = await index.search(query, allowed=names(catalog))
    assert result.mode == "hybrid" and result.hits[0].name == "weather__get_forecast"


def test_a_task_encodes_at_most_its_first_steps() -> None:
    task = "; ".join(f"do step number {n}" for n in range(12))
    plan = plan_query(task, max_steps=4)
    assert plan.steps == tuple(f"do step number {n}" for n in range(4))
    assert plan.texts[0] == task
