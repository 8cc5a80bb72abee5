"""Encoding with the real model: batches by length give the same vectors, repeated texts cost nothing, and
ONNX Runtime gives torch's vectors from a graph cached on disk that is checked before it is trusted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import numpy_helper

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


# ONNX Runtime against torch: the same vectors, a graph cached once and checked every time it is read.

WORDS = "fetch the page at the address, summarise it in three sentences and translate the summary to Portuguese"
TEXTS = [
    TASK,
    "weather in Lisbon",
    "",
    "Ünïcode tëxt: 東京の天気 🌧️ <placeholder> https://example.com/a?b=c",
    " ".join([WORDS] * 12),  # ~230 tokens: just under the model's 256
    " ".join([WORDS] * 60),  # ~1,100 tokens: truncated at 256
    "email the summary to the team",
]


@pytest.fixture(scope="module")
async def torch_embedder() -> Embedder:
    model = Embedder(runtime="torch")
    await model.load()
    return model


@pytest.fixture(scope="module")
async def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A graph directory filled by one load: the tests below copy it instead of exporting again."""
    directory = tmp_path_factory.mktemp("graphs")
    await Embedder(graph_cache=directory).load()
    return directory


def assert_equal_vectors(got: npt.NDArray[np.float32], expected: npt.NDArray[np.float32]) -> None:
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert float(np.min(np.sum(got * expected, axis=1))) >= 0.99999


async def test_onnx_runtime_encodes_queries_to_torchs_vectors(embedder: Embedder, torch_embedder: Embedder) -> None:
    assert (embedder.runtime_in_use, torch_embedder.runtime_in_use) == ("onnxruntime", "torch")
    embedder.clear_query_cache()
    torch_embedder.clear_query_cache()
    assert_equal_vectors(await embedder.encode_queries(TEXTS), await torch_embedder.encode_queries(TEXTS))
    for text in TEXTS:  # alone, as a short query is encoded
        embedder.clear_query_cache()
        assert_equal_vectors((await embedder.encode_query(text))[None], await torch_embedder.encode_queries([text]))


async def test_onnx_runtime_encodes_documents_to_torchs_vectors(embedder: Embedder, torch_embedder: Embedder) -> None:
    documents = [f"{text} ({number})" for number in range(12) for text in TEXTS]  # many batches, of mixed lengths
    assert_equal_vectors(await embedder.encode_documents(documents), await torch_embedder.encode_documents(documents))


async def test_a_token_cap_truncates_the_same_way_on_both_runtimes(torch_embedder: Embedder) -> None:
    capped, capped_torch = Embedder(query_tokens=32), Embedder(query_tokens=32, runtime="torch")
    await capped.load()
    await capped_torch.load()
    assert_equal_vectors(await capped.encode_queries(TEXTS), await capped_torch.encode_queries(TEXTS))
    assert not np.allclose(await capped.encode_queries(TEXTS[-2:-1]), await torch_embedder.encode_queries(TEXTS[-2:-1]))


async def test_the_exported_graph_is_stored_once_and_reused_by_the_next_embedder(
    exported: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(names_in(exported)) == 1  # no temporary file left beside it
    graph = copy_graph(exported, tmp_path)
    caplog.set_level(logging.INFO, logger="aggregator.search.embedder")
    later = Embedder(graph_cache=tmp_path)
    await later.load()
    assert later.runtime_in_use == "onnxruntime"
    assert graph_origins(caplog) == ["cached"]
    assert names_in(tmp_path) == [graph.name]


def copy_graph(source: Path, target: Path, damage: Callable[[bytes], bytes] = bytes) -> Path:
    """Copy the one graph of `source` into `target`, damaged by `damage`; its new path."""
    (graph,) = source.glob("*.onnx")
    copy = target / graph.name
    copy.write_bytes(damage(graph.read_bytes()))
    return copy


def names_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def from_other_weights(data: bytes) -> bytes:
    """A valid graph whose embedding layer norm differs from the model's: it loads, but its vectors are wrong."""
    model = onnx.load_model_from_string(data)
    (weight,) = (i for i in model.graph.initializer if i.name == "transformer.embeddings.LayerNorm.weight")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
    return bytes(model.SerializeToString())


@pytest.mark.parametrize("damage", [truncated, from_other_weights])
async def test_a_damaged_cached_graph_is_rebuilt_not_trusted(
    damage: Callable[[bytes], bytes],
    exported: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    torch_embedder: Embedder,
) -> None:
    graph = copy_graph(exported, tmp_path, damage)
    caplog.set_level(logging.INFO, logger="aggregator.search")
    rebuilt = Embedder(graph_cache=tmp_path)
    await rebuilt.load()
    assert rebuilt.runtime_in_use == "onnxruntime" and graph_origins(caplog) == ["rebuilt"]
    assert graph.read_bytes() == (exported / graph.name).read_bytes()
    assert_equal_vectors(await rebuilt.encode_queries(TEXTS), await torch_embedder.encode_queries(TEXTS))


async def test_an_unwritable_graph_cache_costs_an_export_per_load_not_the_runtime(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("the graph directory cannot be made under a file")
    caplog.set_level(logging.INFO, logger="aggregator.search")
    embedder = Embedder(graph_cache=blocked / "graphs")
    await embedder.load()
    assert embedder.runtime_in_use == "onnxruntime" and graph_origins(caplog) == ["exported"]
    assert [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING] == [
        "embedder.onnx_cache_unwritable"
    ]


async def test_torch_encodes_when_onnxruntime_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, torch_embedder: Embedder
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    caplog.set_level(logging.INFO, logger="aggregator.search.embedder")
    fallback = Embedder()
    await fallback.load()
    assert fallback.runtime_in_use == "torch"
    (warning,) = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.getMessage() == "embedder.runtime_fallback"
    assert vars(warning)["runtime"] == "torch" and "onnxruntime" in vars(warning)["reason"]
    assert_equal_vectors(await fallback.encode_queries(TEXTS), await torch_embedder.encode_queries(TEXTS))


def graph_origins(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [vars(record)["graph"] for record in caplog.records if record.getMessage() == "embedder.runtime"]
