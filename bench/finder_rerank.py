"""Experiment (rejected): a learned reranker over the finder's top 30, cross-validated by server.

Run from the repository root (after `finder_quality.py` has filled the vector cache)::

    python bench/finder_rerank.py --cache /tmp/finder-bench-cache

For every task and every eligible tool it computes features from the packaged MiniLM alone (no
download): the finder's own evidence (best view, server similarity, BM25 / best BM25, matched by
full-text), the tool's description view and name view taken separately, the best view against the
whole query only, the mean over the query's texts of each text's best view (late interaction),
and today's fused score. A linear scorer over those features is trained with a listwise softmax
loss on the training folds (folds split by server, `_crossval.server_folds`; dev and dev +
distractors tasks of the training folds), and reranks today's top 30 of each test task. The own
set is reranked by the scorer trained on all dev tasks. Rows are differences from today's ranking
with 95% paired bootstrap intervals. Result (docs/finder.md): worse than today, so not shipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anyio
import numpy as np
import numpy.typing as npt

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from aggregator.search import Embedder, ToolIndex  # noqa: E402
from aggregator.search.query import plan_query  # noqa: E402
from aggregator.search.ranking import TODAY, Evidence, fuse_evidence  # noqa: E402
from bench._crossval import METRICS, paired_interval, server_folds, task_metrics  # noqa: E402
from bench._finder_data import load_catalogs, seeded_index  # noqa: E402

CANDIDATES = 30
FEATURES = ("dense", "server", "bm25", "matched", "description view", "name view", "whole query", "late", "today")
Matrix = npt.NDArray[np.float64]
Example = tuple[npt.NDArray[np.intp], Matrix, frozenset[int], list[str]]  # rows, features, gold rows, servers


async def features(index: ToolIndex, query: str, embedder: Embedder) -> tuple[npt.NDArray[np.intp], Matrix]:
    snapshot = index.snapshot
    evidence = await index.evidence(query, allowed=frozenset(index.names), top_k=10)
    assert evidence.dense is not None and evidence.server is not None and evidence.full_text is not None
    queries = await embedder.encode_queries(plan_query(query).texts)
    views = np.where(snapshot.view_embedded[None, :], queries @ snapshot.view_vectors.T, -1.0)
    rows, starts, ends = evidence.rows, snapshot.view_start[evidence.rows], snapshot.view_start[evidence.rows + 1]
    per_text = np.stack([np.maximum.reduceat(text, snapshot.view_start[:-1])[rows] for text in views])
    columns = [
        evidence.dense,
        evidence.server,
        evidence.full_text,
        (evidence.full_text > 0).astype(np.float32),
        views[:, starts].max(axis=0),
        views[:, np.where(ends - starts > 1, starts + 1, starts)].max(axis=0),
        per_text[0],
        per_text.mean(axis=0),
        fuse_evidence(Evidence(rows, evidence.dense, evidence.server, evidence.full_text), TODAY),
    ]
    return rows, np.stack(columns, axis=1).astype(np.float64)


def top(example: Example) -> npt.NDArray[np.intp]:
    return np.argsort(-example[1][:, -1], kind="stable")


def train(examples: list[Example], l2: float, steps: int = 400, rate: float = 0.5) -> tuple[Matrix, Matrix, Matrix]:
    """Weights over standardised features; they start at today's ranking (the last feature)."""
    stacked = np.concatenate([example[1][top(example)[:CANDIDATES]] for example in examples])
    mean, spread = stacked.mean(axis=0), stacked.std(axis=0) + 1e-6
    weights = np.zeros(len(FEATURES))
    weights[-1] = 1.0
    lists = []
    for rows, matrix, gold, _ in examples:
        chosen = np.unique(
            np.concatenate([top((rows, matrix, gold, []))[:CANDIDATES], np.flatnonzero(np.isin(rows, list(gold)))])
        )
        target = np.isin(rows[chosen], list(gold)).astype(np.float64)
        if target.sum():
            lists.append(((matrix[chosen] - mean) / spread, target / target.sum()))
    for _ in range(steps):
        gradient = l2 * weights
        for standardised, target in lists:
            scores = standardised @ weights
            probability = np.exp(scores - scores.max())
            gradient += standardised.T @ (probability / probability.sum() - target) / len(lists)
        weights -= rate * gradient
    return weights, mean, spread


def rerank(model: tuple[Matrix, Matrix, Matrix], example: Example) -> list[int]:
    weights, mean, spread = model
    order = top(example)
    head = order[:CANDIDATES]
    head = head[np.argsort(-(((example[1][head] - mean) / spread) @ weights), kind="stable")]
    return [int(row) for row in example[0][np.concatenate([head, order[CANDIDATES:]])][:10]]


def today(example: Example) -> list[int]:
    return [int(row) for row in example[0][top(example)][:10]]


async def gather(arguments: argparse.Namespace) -> dict[str, list[Example]]:
    embedder = Embedder()
    await embedder.load()
    examples: dict[str, list[Example]] = {}
    with tempfile.TemporaryDirectory(prefix="finder-rerank-") as scratch:
        for catalog in load_catalogs(arguments.data, REPOSITORY / "bench" / "data" / "mcpzero_prompts.jsonl"):
            async with seeded_index(Path(scratch) / catalog.label, catalog, embedder, arguments.cache) as index:
                index.ranking = TODAY
                row_of = {name: row for row, name in enumerate(index.names)}
                found = examples.setdefault(catalog.label, [])
                for task in catalog.tasks:
                    rows, matrix = await features(index, task.query, embedder)
                    found.append((rows, matrix, frozenset(row_of[name] for name in task.gold), task.servers))
    return examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "finder-bench-cache")
    arguments = parser.parse_args()
    examples = anyio.run(gather, arguments)
    dev, distracted, own = examples["dev"], examples["dev+distractors"], examples["own+distractors"]
    folds = np.asarray(server_folds([example[3] for example in dev], 5))
    print(
        "| reranker | catalog | " + " | ".join(METRICS) + " | " + " | ".join(f"Δ{m} [95% CI]" for m in METRICS) + " |"
    )
    print("|" + "---|" * (2 + 2 * len(METRICS)))
    for l2 in (0.1, 0.01):
        tables: dict[str, tuple[list[list[float]], list[list[float]]]] = {}
        for fold in range(int(folds.max()) + 1):
            train_rows = np.flatnonzero(folds != fold)
            model = train([dev[i] for i in train_rows] + [distracted[i] for i in train_rows], l2)
            for label, catalog in (("dev", dev), ("dev+distractors", distracted)):
                new, old = tables.setdefault(label, ([], []))
                for i in np.flatnonzero(folds == fold):
                    new.append(task_metrics(rerank(model, catalog[i]), catalog[i][2]))
                    old.append(task_metrics(today(catalog[i]), catalog[i][2]))
        model = train(dev + distracted, l2)
        new, old = tables.setdefault("own+distractors", ([], []))
        for example in own:
            new.append(task_metrics(rerank(model, example), example[2]))
            old.append(task_metrics(today(example), example[2]))
        print(
            f"weights (l2={l2}, all dev): {dict(zip(FEATURES, np.round(model[0], 2).tolist(), strict=True))}",
            file=sys.stderr,
        )
        for label, (new, old) in tables.items():
            candidate, baseline = np.asarray(new), np.asarray(old)
            cells = " | ".join(interval.cell() for interval in paired_interval(candidate, baseline))
            means = " | ".join(f"{value:.3f}" for value in candidate.mean(axis=0))
            print(f"| linear, l2={l2} (CV) | {label} | {means} | {cells} |")


if __name__ == "__main__":
    main()
