"""The sentence-transformers model on ONNX Runtime: torch's vectors, for a third of the encoding CPU.

A query is a handful of tokens, so torch's per-operator overhead is much of its cost; ONNX Runtime
runs the same float32 graph with its layer norms and GELU fused. Measured side by side on 2 shared
cores (docs/finder.md, "Query path"): encoding a short query 21 -> 7 ms CPU, a short query's whole
search 25 -> 14 ms CPU at p50, a long task's 68 -> 38 ms, tool documents 40% less CPU. The vectors
equal torch's (largest difference ~2e-7; `tests/search/test_embedder.py` holds them to 1e-5).

The graph is exported from the loaded torch model itself (the transformer, mean pooling and
normalisation; batch and sequence axes dynamic) with torch's TorchScript exporter, which needs the
`onnx` package and takes ~5 s; the newer dynamo exporter took 17-21 s and also needs onnxscript.
The export is cached in a directory as `<digest>.onnx`, where the digest covers the model's
weights, its configuration and the versions that shape the graph, and is written atomically (temp
file, fsync, rename). A graph, cached or new, is used only if it reproduces torch's vectors on a
probe batch of short, long and truncated texts: a damaged or foreign file is rebuilt, not trusted.

One session (~130 MB resident) serves both paths with ONE intra-op thread (`Session.run` is
thread-safe and releases the GIL, so queries need no lock). Documents go two at a time, longest
first: on one thread padding is pure waste and batching saves little. 640 tool texts in the
index's chunks of 64, interleaved (two runs; batches of 8 took 11.1 s in both): 8.5 s CPU in
batches of 2, 8.7 of 1, 9.4 of 4, 16.9 of 16, 26.4 of 32, and 39.9 s on torch (2 threads, 32). Two worker threads
running passes at once cost more CPU than they saved on these 2 cores (768 texts in batches of
32: 43.2 s CPU against 27.0 on one thread).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from aggregator.config.files import write_atomically

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]

GRAPH_FORMAT = 1  # bump when `export_graph` changes what it writes
OPSET = 17
TOLERANCE = 1e-5
PROBE = (
    "weather in Lisbon",
    "",
    "Send the meeting notes to the team, then book a room for Friday and add it to my calendar.",
    " ".join(f"step {number}: fetch the page, summarise it and translate it to Portuguese" for number in range(40)),
)


class OnnxEncoder:
    """Encodes texts with an ONNX Runtime session; rows are unit vectors, as the torch model's.

    Thread-safe: the tokenizer is never reconfigured after construction, and a session may run
    from several threads at once. `limited(tokens)` shares the session with a shorter truncation.
    """

    def __init__(self, session: Any, tokenizer: Any, max_tokens: int) -> None:
        import onnxruntime  # type: ignore[import-untyped]

        self._session = session
        # Each run hands the memory of its activations back: a batch of 32 texts of 256 tokens grows
        # the arena by ~500 MB, kept for good otherwise (10 document batches: +690 MB resident
        # against +190 MB with this, and +60-180 MB for torch; short queries' CPU unchanged).
        self._run_options = onnxruntime.RunOptions()
        self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._source = tokenizer
        self._tokenizer = _configured(tokenizer, max_tokens)
        self.max_tokens = max_tokens

    def limited(self, max_tokens: int | None) -> OnnxEncoder:
        """The same session, truncating each text to `max_tokens` (this encoder's limit if None or larger)."""
        if max_tokens is None or max_tokens >= self.max_tokens:
            return self
        return OnnxEncoder(self._session, self._source, max_tokens)

    def encode(self, texts: Sequence[str]) -> Vectors:
        """One forward pass over `texts`, padded to the longest of them."""
        return self.run(*self.tokenize(texts))

    def tokenize(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Token ids and attention mask of `texts`, truncated and padded to the batch's longest (batch x tokens)."""
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        return ids, np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)

    def run(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Vectors:
        """The unit vectors of tokenized texts (`tokenize` and `run` are timed apart by the benchmark)."""
        (vectors,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask}, self._run_options)
        return np.ascontiguousarray(vectors, dtype=np.float32)


_EXPORTS_KEPT = 2
_EXPORTED: dict[str, bytes] = {}
"""Graphs this process exported and verified, by `graph_digest`: an export is a pure function of the
weights and versions the digest covers, and takes seconds of CPU, so a second `Embedder` of the same
model in one process (each gateway, `ToolIndex` or CLI command has its own) reuses it. Each use is
verified again on the probe."""


def onnx_encoder(model: SentenceTransformer, cache: Path | None, threads: int = 1) -> tuple[OnnxEncoder, str]:
    """An encoder equal to `model` running on `threads` intra-op threads, and how its graph was obtained.

    How: "cached", "exported" or "rebuilt" (a cached file failed the probe). With `cache` None the
    graph is exported into memory at every load. Raises ImportError when onnxruntime or onnx is
    missing, and RuntimeError when no graph reproduces the model's vectors.
    """
    # Fail fast, before seconds of export, when the runtime is missing.
    import onnxruntime  # type: ignore[import-untyped]  # noqa: F401

    digest = graph_digest(model)
    path = None if cache is None else cache / f"{digest}.onnx"
    how = "exported"
    if path is not None and path.exists():
        encoder = _verified(model, str(path), threads)  # read by the runtime: no second copy in Python
        if encoder is not None:
            return encoder, "cached"
        logger.warning("embedder.onnx_cache_rejected", extra={"path": str(path), "action": "rebuilding"})
        how = "rebuilt"
    graph = _EXPORTED.get(digest) or export_graph(model)
    encoder = _verified(model, graph, threads)
    if encoder is None:
        raise RuntimeError("the exported ONNX graph does not reproduce the torch model's vectors")
    if len(_EXPORTED) >= _EXPORTS_KEPT:
        _EXPORTED.clear()
    _EXPORTED[digest] = graph
    if path is not None:
        try:
            write_atomically(path, graph)
        except OSError as error:  # the graph in memory serves; the next load exports again
            logger.warning("embedder.onnx_cache_unwritable", extra={"path": str(path), "error": str(error)})
    return encoder, how


def graph_digest(model: SentenceTransformer) -> str:
    """What the exported graph depends on: weights, configuration, and the exporting libraries' versions."""
    import onnx
    import torch
    import transformers

    digest = hashlib.sha256(f"{GRAPH_FORMAT} {OPSET} {torch.__version__} {transformers.__version__}".encode())
    transformer: Any = model[0]
    digest.update(f"{onnx.__version__} {model!r} {transformer.auto_model.config.to_json_string()}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy())  # the buffer itself: a copy took seconds under load
    return digest.hexdigest()[:32]


def export_graph(model: SentenceTransformer) -> bytes:
    """The ONNX graph of `model`'s transformer with mean pooling and normalisation, as bytes."""
    import io
    import warnings

    import torch

    transformer: Any = model[0]
    pooled = _pooled(transformer.auto_model)
    example = transformer.tokenizer(["an example", "a longer example text"], padding=True, return_tensors="pt")
    axes = {0: "batch", 1: "sequence"}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated in torch 2.9+ and its tracer warns about shape
        # checks that are constant for an encoder with an attention mask; the probe checks the result.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pooled,
            (example["input_ids"], example["attention_mask"]),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "sentence_embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def _verified(model: SentenceTransformer, graph: bytes | str, threads: int) -> OnnxEncoder | None:
    """An encoder for `graph` (the graph, or its file's path) if it loads and matches `model` on the probe texts."""
    import onnxruntime  # type: ignore[import-untyped]
    from onnxruntime.capi import onnxruntime_pybind11_state as state  # type: ignore[import-untyped]

    transformer: Any = model[0]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        encoder = OnnxEncoder(session, transformer.tokenizer, int(model.max_seq_length or 512))
        got = encoder.encode(PROBE)
    except (
        state.Fail,
        state.InvalidProtobuf,
        state.InvalidGraph,
        state.InvalidArgument,
        state.NoSuchFile,
        state.RuntimeException,
    ):
        return None
    expected = model.encode(list(PROBE), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return encoder if got.shape == expected.shape and np.allclose(got, expected, rtol=0, atol=TOLERANCE) else None


def _configured(tokenizer: Any, max_tokens: int) -> Tokenizer:
    """A copy of a fast `transformers` tokenizer's backend that truncates to `max_tokens` and pads to a batch's longest.

    The copy is used directly (0.1 ms per short query against 0.45 ms through `transformers`) and
    is never reconfigured afterwards, so threads may share it.
    """
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    copy.enable_truncation(max_tokens)
    copy.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    return copy


def _pooled(transformer: Any) -> Any:
    """The transformer with sentence-transformers' mean pooling and normalisation, as one torch module."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    return Pooled().eval()
