"""How evidence becomes one ranking: dense similarity (query texts x tool views, plus the tool's
server) and full-text BM25, gathered per eligible tool as `Evidence`, then fused.

The finder fuses by a weighted sum (`Ranking.fusion = "weighted"`): dense + 0.3 x server +
0.3 x BM25 / best BM25. Cosine similarities are on one scale for every query, so scores are added
as they are. Two other fusions are kept for the benchmark, which judges every fusion by
cross-validation over folds split by server with paired bootstrap intervals (docs/finder.md):

* "rrf": reciprocal rank fusion of the dense and the full-text rankings (ranks only);
* "minmax": the dense half rescaled per query (best 1, `minmax_depth`-th best 0) and mixed with BM25.

Both lose Recall@5 at the 95% level on LiveMCPBench, with and without distractors, and on every
fold the cross-validation picks the weighted sum with today's constants.

Last, `ranked_rows` lets siblings (one server's tools on one object: `list_buckets`, `get_bucket`,
`delete_bucket`) trade places when the request's action agrees with a name's (`siblings.py`,
`Ranking.sibling_bonus`): on the sibling set, R@1 +0.10 and NDCG@10 +0.05 at the 95% level, with
no interval below zero on any set (docs/finder.md).

For a request that splits into steps, `ranked_rows` can also lift the tools of a server the task
points to (`Ranking.server_coherence`) and each step's best tools (`Ranking.step_coverage`);
see `multistep.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from aggregator.search import multistep, siblings
from aggregator.search.embedder import Vectors
from aggregator.search.query import MAX_STEPS, plan_query
from aggregator.search.snapshot import Rows, Snapshot

Scores = npt.NDArray[np.float32]
Hit = tuple[int, float]  # a tool's row and its score
Fusion = Literal["weighted", "rrf", "minmax"]


@dataclass(frozen=True, slots=True)
class Ranking:
    """The knobs of the finder's ranking; the defaults are what the cross-validated benchmark supports.

    `split_steps`: search a multi-step request as a whole and step by step (`query.plan_query`).
    `whole_query_words`: a multi-step request longer than this many words is encoded as its steps
    only, without the whole text (`None`: always with it).
    `fusion`: "weighted" (scores), "rrf" (ranks) or "minmax"; see the module docstring.
    `server_weight`: weight of the best similarity between the query and the tool's server,
    added to the tool's own dense score before either fusion.
    `full_text_weight`: weight of the full-text half (of its BM25 / best BM25, or of its RRF term).
    `rrf_k`: the k of reciprocal rank fusion; larger flattens the head of each ranking.
    `minmax_depth`: "minmax" rescales the dense half so its best tool scores 1 and its
    `minmax_depth`-th best 0, then mixes it with BM25 / best BM25 as `(1 - w) dense + w full-text`.
    `full_text_candidates`: how many full-text hits take part in a fusion.
    `max_steps`: at most this many steps of a multi-step request are encoded (the first ones).
    `sibling_bonus`: among the `sibling_depth` best tools, a tool whose name's action agrees with the
    request's (`siblings.py`) counts this much more against its own server's tools (0: off).
    `full_text_margin`: the full-text half counts only for tools whose dense half is within this of
    the best dense score (`None`: for every tool), so shared words cannot lift a tool the model
    places far from the request.
    `server_coherence`: for a request with steps, a tool gains this much x the best score among its
    server's tools (`multistep.server_coherence`; 0: off).
    `step_coverage`: for a request with steps, a tool gains this much x its distance below the best
    tool of the text it comes closest to (`multistep.step_coverage`; 0: off). Needs `Evidence.text_dense`.
    """

    split_steps: bool = True
    whole_query_words: int | None = None
    fusion: Fusion = "weighted"
    server_weight: float = 0.3
    full_text_weight: float = 0.3
    rrf_k: int = 60
    minmax_depth: int = 20
    full_text_candidates: int = 100
    max_steps: int = MAX_STEPS
    sibling_bonus: float = 0.05
    sibling_depth: int = 30
    full_text_margin: float | None = None
    server_coherence: float = 0.0
    step_coverage: float = 0.0


TODAY = Ranking(fusion="weighted", server_weight=0.3, full_text_weight=0.3, sibling_bonus=0.0)
"""The ranking before issue 17, spelled out: the baseline every change is measured against."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """What each eligible row scored, aligned with `rows`; a half that did not run is `None`.

    `dense`: the tool's best view against the query's best text; `server`: its server's best
    similarity; `full_text`: its BM25 divided by the best among the rows (0 when not matched).
    `text_dense` and `text_server`: the same as `dense` and `server` for each query text alone
    (texts x rows, `view_scores_by_text`), for `Ranking.step_coverage`; `None` when not gathered.
    """

    rows: Rows
    dense: Scores | None
    server: Scores | None
    full_text: Scores | None
    text_dense: Scores | None = None
    text_server: Scores | None = None


def view_scores(snapshot: Snapshot, rows: Rows, queries: Vectors) -> tuple[Scores, Scores]:
    """Each eligible row's best view against the query's best text, and its server's best similarity.

    Every view is scored (a matrix product over all views costs less than copying the eligible
    ones out), then only eligible rows are kept. A tool without any vector yet scores 0 here and is
    found by full-text until its embedding is done.
    """
    if rows.size == 0 or snapshot.view_vectors.shape[1] == 0:
        zeros = np.zeros(rows.size, dtype=np.float32)
        return zeros, zeros
    views = (queries @ snapshot.view_vectors.T).max(axis=0)
    views = np.where(snapshot.view_embedded, views, np.float32(-np.inf))
    starts, ends = snapshot.view_start[rows], snapshot.view_start[rows + 1]
    lengths = ends - starts
    first = np.cumsum(lengths) - lengths
    gathered = views[np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))]
    tools = np.maximum.reduceat(gathered, first)
    tools = np.where(np.isfinite(tools), tools, np.float32(0.0)).astype(np.float32)
    servers = np.zeros(rows.size, dtype=np.float32)
    if snapshot.server_vectors.shape[0]:
        by_server = (queries @ snapshot.server_vectors.T).max(axis=0)
        by_server = np.where(snapshot.server_embedded, by_server, np.float32(0.0))
        servers = by_server[snapshot.tool_server[rows]].astype(np.float32)
    return tools, servers


def view_scores_by_text(snapshot: Snapshot, rows: Rows, queries: Vectors) -> tuple[Scores, Scores]:
    """`view_scores` for each query text alone: two texts x rows matrices (their row-wise max is `view_scores`)."""
    pairs = [view_scores(snapshot, rows, queries[text : text + 1]) for text in range(queries.shape[0])]
    return np.stack([tools for tools, _ in pairs]), np.stack([servers for _, servers in pairs])


def dense_scores(snapshot: Snapshot, rows: Rows, queries: Vectors, ranking: Ranking) -> Scores:
    """The dense half of the ranking: best view plus `server_weight` x the server's similarity."""
    tools, servers = view_scores(snapshot, rows, queries)
    return _dense(tools, servers, ranking)


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


def fuse_evidence(evidence: Evidence, ranking: Ranking) -> Scores:
    """The final score of each row of `evidence` under `ranking`."""
    dense = None
    if evidence.dense is not None:
        servers = evidence.server if evidence.server is not None else np.zeros_like(evidence.dense)
        dense = _dense(evidence.dense, servers, ranking)
    return fuse(dense, evidence.full_text, ranking)


def fuse(dense: Scores | None, full_text: Scores | None, ranking: Ranking) -> Scores:
    """Fuse the two halves (or return whichever is there): their RRF, or dense plus weighted full-text."""
    if full_text is None:
        if dense is None:
            raise ValueError("fuse() needs at least one kind of score")
        return dense
    if dense is None:
        return full_text
    weight = np.float32(ranking.full_text_weight)
    if ranking.full_text_margin is not None and dense.size:
        full_text = np.where(dense >= dense.max() - ranking.full_text_margin, full_text, np.float32(0.0))
    if ranking.fusion == "minmax":
        return ((1 - weight) * _rescaled(dense, ranking.minmax_depth) + weight * full_text).astype(np.float32)
    if ranking.fusion == "rrf":
        matched = full_text > 0
        text_term = np.where(matched, _reciprocal_rank(full_text, ranking.rrf_k), np.float32(0.0))
        return (_reciprocal_rank(dense, ranking.rrf_k) + weight * text_term).astype(np.float32)
    return (dense + weight * full_text).astype(np.float32)


def _dense(tools: Scores, servers: Scores, ranking: Ranking) -> Scores:
    if not ranking.server_weight:
        return tools
    return (tools + np.float32(ranking.server_weight) * servers).astype(np.float32)


def _rescaled(scores: Scores, depth: int) -> Scores:
    """`scores` shifted and scaled so the best is 1 and the `depth`-th best is 0 (lower ones go negative)."""
    if scores.size == 0:
        return scores
    depth = min(depth, scores.size)
    best = float(scores.max())
    floor = float(scores[np.argpartition(-scores, depth - 1)[depth - 1]])
    spread = best - floor
    return ((scores - floor) / spread).astype(np.float32) if spread > 0 else np.zeros_like(scores)


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


def ranked_rows(snapshot: Snapshot, evidence: Evidence, query: str, ranking: Ranking, count: int) -> list[Hit]:
    """The `count` best rows of `evidence` for `query` under `ranking`, best first, with their scores.

    The halves are fused; with full-text alone a tool that matched no word is no answer. A request
    with steps then gets the multi-step adjustments (`multistep.py`) when `ranking` turns them on.
    Last, with `ranking.sibling_bonus`, each server's tools among the best `sibling_depth` are
    re-sorted among the places they hold (`siblings.reorder`); a tool takes the score of its new
    place, so scores still fall down the list.
    """
    scores = fuse_evidence(evidence, ranking)
    rows = evidence.rows
    plan = plan_query(
        query, split_steps=ranking.split_steps, whole_words=ranking.whole_query_words, max_steps=ranking.max_steps
    )
    if plan.steps and evidence.dense is not None:
        scores = _multistep(snapshot, evidence, scores, ranking)
    if evidence.dense is None:
        rows, scores = rows[scores > 0], scores[scores > 0]
    order = top(scores, max(count, ranking.sibling_depth) if ranking.sibling_bonus else count)
    places = scores[order][:count].tolist()
    if ranking.sibling_bonus:
        candidates = rows[order]
        moved = siblings.reorder(
            snapshot.tool_server[candidates].tolist(),
            [snapshot.documents[snapshot.names[row]].tool_label for row in candidates],
            scores[order].tolist(),
            siblings.actions_of_query(plan.texts),
            ranking.sibling_bonus,
        )
        order = order[moved]
    return list(zip(rows[order[:count]].tolist(), places, strict=True))


def _multistep(snapshot: Snapshot, evidence: Evidence, scores: Scores, ranking: Ranking) -> Scores:
    """`scores` with server coherence and then step coverage (when each text's scores were gathered) applied."""
    scores = multistep.server_coherence(scores, snapshot.tool_server[evidence.rows], ranking.server_coherence)
    if not ranking.step_coverage or evidence.text_dense is None:
        return scores
    return multistep.step_coverage(scores, fuse_by_text(evidence, ranking), ranking.step_coverage)


def fuse_by_text(evidence: Evidence, ranking: Ranking) -> Scores:
    """Each row's fused score against each query text alone (texts x rows; `evidence.text_dense` must be gathered)."""
    if evidence.text_dense is None:
        raise ValueError("the evidence holds no scores per text")
    servers = evidence.text_server if evidence.text_server is not None else np.zeros_like(evidence.text_dense)
    by_text = [_dense(dense, server, ranking) for dense, server in zip(evidence.text_dense, servers, strict=True)]
    return np.stack([fuse(dense, evidence.full_text, ranking) for dense in by_text])
