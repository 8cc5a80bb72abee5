"""Query encoding with the real model: batches by length give the same vectors, and repeated texts cost nothing."""

from __future__ import annotations

import numpy as np
import pytest

from aggregator.search import Embedder, ToolDocument, ToolIndex
from aggregator.search.embedder import length_groups
from tests.search.catalog import names

pytestmark = pytest.mark.anyio

TASK = (
    "Look up the weather forecast for Lisbon for the whole of next week including wind and rain, "
    "then email the summary to the team, and put a planning meeting on my calendar"
)


def test_texts_are_batched_with_texts_of_similar_length() -> None:
    texts = ["x" * 100, "x" * 20, "x" * 25, "x" * 18, "x" * 60]
    groups = length_groups(texts)
    assert sorted(i for group in groups for i in group) == list(range(len(texts)))
    assert [0, 1] not in groups and any({1, 2, 3} <= set(group) for group in groups)
    assert length_groups([]) == [] and length_groups([""]) == [[0]]


async def test_a_long_task_encodes_to_the_same_vectors_as_its_texts_one_by_one(embedder: Embedder) -> None:
    texts = [TASK, "Look up the weather forecast", "email the summary to the team", "put a planning meeting"]
    embedder.clear_query_cache()
    together = await embedder.encode_queries(texts)
    embedder.clear_query_cache()
    alone = np.stack([await embedder.encode_query(text) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


async def test_a_repeated_query_is_answered_from_the_cache_with_the_same_ranking(
    shared_index: ToolIndex, embedder: Embedder, catalog: list[ToolDocument]
) -> None:
    first = await shared_index.search(TASK, allowed=names(catalog))
    encoded = embedder.queries_encoded
    again = await shared_index.search(TASK, allowed=names(catalog))
    assert embedder.queries_encoded == encoded
    assert [hit.name for hit in again.hits] == [hit.name for hit in first.hits]
    await shared_index.search("email the summary to the team", allowed=names(catalog))  # a step seen before
    assert embedder.queries_encoded == encoded


async def test_the_query_cache_stays_bounded() -> None:
    small = Embedder(query_cache_size=2)
    await small.load()
    for text in ("one query", "another query", "a third query"):
        await small.encode_query(text)
    assert small.queries_encoded == 3
    await small.encode_query("a third query")
    assert small.queries_encoded == 3
    await small.encode_query("one query")  # evicted: encoded again
    assert small.queries_encoded == 4
