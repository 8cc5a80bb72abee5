"""How evidence becomes one ranking: dense similarity (query texts x tool views, plus the tool's
server), full-text BM25, fused by a weighted sum of scores.

Why a weighted sum and not RRF: both halves carry information in their scores, not only in their
ranks. Cosine similarities are on one scale for every query; BM25 is divided by the query's best
BM25 score. With reciprocal rank fusion (k=60) of the same two lists the finder scores NDCG@10
0.459 instead of 0.472 and Recall@10 0.509 instead of 0.529 on LiveMCPBench (`Ranking(rrf_k=60)`
in `bench/finder_quality.py --ablation`). The weights are round values chosen on that benchmark:
the ranking is flat around them (+-0.1 moves NDCG@10 by about 0.01), weights picked by a grid on
one half of its tasks did worse on the other half than these, and nothing is tuned per query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aggregator.search.embedder import Vectors
from aggregator.search.snapshot import Rows, Snapshot

Scores = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Ranking:
    """The knobs of the finder's ranking; the defaults are what the benchmarks support.

    `split_steps`: search a multi-step request as a whole and step by step (`query.plan_query`).
    `server_weight`: weight of the best similarity between the query and the tool's server
    (without it: NDCG@10 0.458 instead of 0.472 on LiveMCPBench; equal with distractors).
    `full_text_weight`: weight of the tool's BM25 score, divided by the query's best BM25 score.
    `full_text_candidates`: how many full-text hits take part in a fusion.
    `rrf_k`: fuse by reciprocal rank fusion with this k instead (kept for comparison; it ranks worse).
    """

    split_steps: bool = True
    server_weight: float = 0.3
    full_text_weight: float = 0.3
    full_text_candidates: int = 100
    rrf_k: int | None = None


def dense_scores(snapshot: Snapshot, rows: Rows, queries: Vectors, ranking: Ranking) -> Scores:
    """Dense score of each eligible row: its best view against the query's best text, plus its server's.

    Every view is scored (a matrix product over all views costs less than copying the eligible
    ones out), then only eligible rows are kept. A tool without any vector yet scores 0 here and is
    found by full-text until its embedding is done.
    """
    if rows.size == 0 or snapshot.view_vectors.shape[1] == 0:
        return np.zeros(rows.size, dtype=np.float32)
    views = (queries @ snapshot.view_vectors.T).max(axis=0)
    views = np.where(snapshot.view_embedded, views, np.float32(-np.inf))
    starts, ends = snapshot.view_start[rows], snapshot.view_start[rows + 1]
    lengths = ends - starts
    first = np.cumsum(lengths) - lengths
    gathered = views[np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))]
    tools = np.maximum.reduceat(gathered, first)
    tools = np.where(np.isfinite(tools), tools, np.float32(0.0))
    if ranking.server_weight and snapshot.server_vectors.shape[0]:
        servers = (queries @ snapshot.server_vectors.T).max(axis=0)
        servers = np.where(snapshot.server_embedded, servers, np.float32(0.0))
        tools = tools + np.float32(ranking.server_weight) * servers[snapshot.tool_server[rows]]
    return tools.astype(np.float32, copy=False)


def full_text_scores(snapshot: Snapshot, rows: Rows, hits: Mapping[str, float]) -> Scores:
    """BM25 of each eligible row divided by the best BM25 among them; 0 for rows full-text did not return."""
    scores = np.zeros(rows.size, dtype=np.float32)
    if not hits or rows.size == 0:
        return scores
    hit_rows = np.fromiter((snapshot.rows.get(name, -1) for name in hits), dtype=np.intp, count=len(hits))
    values = np.fromiter(hits.values(), dtype=np.float32, count=len(hits))
    positions = np.minimum(np.searchsorted(rows, hit_rows), rows.size - 1)  # rows are ascending
    eligible = rows[positions] == hit_rows
    scores[positions[eligible]] = values[eligible]
    best = float(scores.max())
    return scores / np.float32(best) if best > 0 else scores


def fuse(dense: Scores | None, full_text: Scores | None, ranking: Ranking) -> Scores:
    """The final score: dense plus weighted full-text (or their RRF if `ranking.rrf_k`), or whichever half is there."""
    if full_text is None:
        if dense is None:
            raise ValueError("fuse() needs at least one kind of score")
        return dense
    if dense is None:
        return full_text
    if ranking.rrf_k:
        matched = full_text > 0
        return _reciprocal_rank(dense, ranking.rrf_k) + np.where(
            matched, _reciprocal_rank(full_text, ranking.rrf_k), np.float32(0.0)
        )
    return dense + np.float32(ranking.full_text_weight) * full_text


def _reciprocal_rank(scores: Scores, k: int) -> Scores:
    ranks = np.empty(scores.size, dtype=np.float32)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, scores.size + 1, dtype=np.float32)
    return (1.0 / (k + ranks)).astype(np.float32)


def top(scores: Scores, count: int) -> npt.NDArray[np.intp]:
    """Positions of the `count` best scores, best first; ties go to the lower position, so results are stable.

    A partial partition finds the candidates (everything tied with the last one included), so only
    those are sorted: sorting 10,000 scores per query would cost more than the rest of the ranking.
    """
    if count <= 0 or scores.size == 0:
        return np.empty(0, dtype=np.intp)
    candidates = np.arange(scores.size, dtype=np.intp)
    if count < scores.size:
        threshold = scores[np.argpartition(-scores, count - 1)[count - 1]]
        candidates = np.flatnonzero(scores >= threshold)
    order = candidates[np.lexsort((candidates, -scores[candidates]))]
    return order[:count]
