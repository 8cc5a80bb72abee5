"""An int8 copy of the model for the query path, sharing everything but its Linear layers with the original.

A query is a handful of tokens, so encoding it is bound by reading the weights, not by arithmetic:
MiniLM's Linear layers are 42 MB in float32 (more than this machine's 32 MB L3 cache) and about
11 MB as int8. Weights are quantised per output channel (torch's dynamic quantisation: activations
are quantised on the fly, per batch); per tensor, the query vectors drifted twice as far from the
float32 ones (mean cosine 0.953 against 0.979 on the benchmark's prompts). Documents are still
encoded by the float32 model: the index holds float32 vectors, and only the query side changes.

Not the default (docs/finder.md, "Query path"): with every Linear layer in int8 the finder ranks
worse at the 95% level, and because activations are scaled per batch, a text's vector depends on
the texts encoded beside it, which the query cache would turn into rankings that depend on history.
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def int8_copy(
    model: SentenceTransformer, *, per_channel: bool = True, keep_feed_forward_output: bool = False
) -> SentenceTransformer:
    """A copy of `model` whose Linear layers hold int8 weights; embeddings and norms are shared, not copied.

    `keep_feed_forward_output` leaves each layer's feed-forward output projection (BERT's
    `layer.N.output.dense`, whose input comes straight from GELU) in float32: the layer whose
    quantisation moved the query vectors most (mean cosine to float32 0.990 without it, 0.979 with).
    """
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    shared: dict[int, object] = {
        id(parameter): parameter
        for module in model.modules()
        if not isinstance(module, torch.nn.Linear)
        for parameter in module.parameters(recurse=False)
    }
    query_model = copy.deepcopy(model, memo=shared)
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    with warnings.catch_warnings():
        # torch 2.13 marks eager quantisation deprecated in favour of torchao, which is not a dependency.
        warnings.simplefilter("ignore")
        layers: dict[str | type[torch.nn.Module], object] = {
            name: qconfig
            for name, module in query_model.named_modules()
            if isinstance(module, torch.nn.Linear)
            and not (keep_feed_forward_output and name.endswith("output.dense") and "attention" not in name)
        }
        quantize_dynamic(query_model, layers, dtype=torch.qint8, inplace=True)  # type: ignore[no-untyped-call]
    return query_model
