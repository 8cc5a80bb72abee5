"""Experiment (rejected): each tool parameter as a dense view, cross-validated by server.

Run from the repository root (after `finder_quality.py` has filled the vector cache)::

    python bench/finder_parameter_views.py --cache /tmp/finder-bench-cache

Each parameter becomes a text `tool words: parameter words: its description`, embedded once (kept
in `--cache/parameter_vectors.npz`). A tool's parameter score is its best parameter view against
the query's best text. Two rankings are tried on top of today's: "add" (today + w x parameter
score, w chosen per fold from `WEIGHTS` on the other folds, folds split by server) and "max" (the
parameter views join the tool's other views). The own set uses the w chosen on all dev tasks.
Rows are differences from today's ranking with 95% paired bootstrap intervals (docs/finder.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from aggregator.search import Embedder, ToolDocument  # noqa: E402
from aggregator.search.documents import name_words  # noqa: E402
from aggregator.search.query import plan_query  # noqa: E402
from aggregator.search.ranking import TODAY, fuse_evidence  # noqa: E402
from bench._crossval import METRICS, Metrics, paired_interval, server_folds, task_metrics  # noqa: E402
from bench._finder_data import load_catalogs, seeded_index  # noqa: E402

WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3)
Floats = npt.NDArray[np.float32]
Example = tuple[npt.NDArray[np.intp], Floats, Floats, Floats, frozenset[int], list[str]]


def parameter_texts(document: ToolDocument) -> list[str]:
    properties = document.input_schema.get("properties")
    if not isinstance(properties, dict):
        return []
    texts = []
    for name, spec in properties.items():
        text = f"{name_words(document.tool_label)}: {name_words(str(name))}"
        description = spec.get("description") if isinstance(spec, dict) else None
        if isinstance(description, str) and description.strip():
            text += f": {' '.join(description.split())}"
        texts.append(text)
    return texts


def read_vectors(path: Path) -> dict[str, Floats]:
    if not path.exists():
        return {}
    with np.load(path) as stored:
        return dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))


async def parameter_vectors(texts: list[str], embedder: Embedder, path: Path) -> dict[str, Floats]:
    vectors = await anyio.to_thread.run_sync(read_vectors, path)
    if missing := [text for text in texts if text not in vectors]:
        vectors.update(zip(missing, await embedder.encode_documents(missing), strict=True))
        keys = sorted(vectors)
        np.savez(path, keys=np.asarray(keys), vectors=np.stack([vectors[key] for key in keys]))
    return vectors


async def gather(arguments: argparse.Namespace) -> dict[str, list[Example]]:
    embedder = Embedder()
    await embedder.load()
    catalogs = load_catalogs(arguments.data, REPOSITORY / "bench" / "data" / "mcpzero_prompts.jsonl")
    texts = sorted(
        {text for catalog in catalogs for document in catalog.documents for text in parameter_texts(document)}
    )
    vectors = await parameter_vectors(texts, embedder, arguments.cache / "parameter_vectors.npz")
    examples: dict[str, list[Example]] = {}
    with tempfile.TemporaryDirectory(prefix="finder-parameters-") as scratch:
        for catalog in catalogs:
            async with seeded_index(Path(scratch) / catalog.label, catalog, embedder, arguments.cache) as index:
                index.ranking = TODAY
                documents = {document.name: document for document in catalog.documents}
                owners = [
                    (row, text) for row, name in enumerate(index.names) for text in parameter_texts(documents[name])
                ]
                owner = np.asarray([row for row, _ in owners], dtype=np.intp)
                matrix = np.stack([vectors[text] for _, text in owners])
                row_of = {name: row for row, name in enumerate(index.names)}
                found = examples.setdefault(catalog.label, [])
                for task in catalog.tasks:
                    evidence = await index.evidence(task.query, allowed=frozenset(index.names), top_k=10)
                    assert evidence.dense is not None
                    queries = await embedder.encode_queries(plan_query(task.query).texts)
                    best = np.full(len(index.names), -np.inf, dtype=np.float32)
                    np.maximum.at(best, owner, (queries @ matrix.T).max(axis=0))
                    parameters = np.where(np.isfinite(best), best, 0.0).astype(np.float32)[evidence.rows]
                    gold = frozenset(row_of[name] for name in task.gold)
                    today = fuse_evidence(evidence, TODAY)
                    found.append((evidence.rows, today, parameters, evidence.dense, gold, task.servers))
    return examples


def ranked(example: Example, kind: str, weight: float) -> list[int]:
    rows, today, parameters, dense, _, _ = example
    if kind == "add":
        scores = today + np.float32(weight) * parameters
    else:
        scores = today - dense + np.maximum(dense, parameters) if weight else today
    return [int(row) for row in rows[np.argsort(-scores, kind="stable")[:10]]]


def table(examples: list[Example], kind: str, weight: float) -> Metrics:
    return np.asarray([task_metrics(ranked(example, kind, weight), example[4]) for example in examples])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "finder-bench-cache")
    examples = anyio.run(gather, parser.parse_args())
    dev, distracted, own = examples["dev"], examples["dev+distractors"], examples["own+distractors"]
    folds = np.asarray(server_folds([example[5] for example in dev], 5))
    ndcg = METRICS.index("NDCG@10")
    print("| ranking | catalog | " + " | ".join(METRICS) + " | " + " | ".join(f"Δ{m} [95% CI]" for m in METRICS) + " |")
    print("|" + "---|" * (2 + 2 * len(METRICS)))
    for kind, grid in (("add", WEIGHTS), ("max", (0.0, 1.0))):
        tables = {weight: (table(dev, kind, weight), table(distracted, kind, weight)) for weight in grid}

        def quality(
            weight: float,
            chosen: npt.NDArray[np.bool_],
            tables: dict[float, tuple[Metrics, Metrics]] = tables,
            grid: tuple[float, ...] = grid,
        ) -> tuple[float, float]:
            return float(np.mean([part[chosen, ndcg].mean() for part in tables[weight]])), -grid.index(weight)

        out_of_fold = [np.zeros_like(part) for part in tables[grid[0]]]
        picks = []
        for fold in range(int(folds.max()) + 1):
            pick = max(grid, key=lambda weight: quality(weight, folds != fold))
            picks.append(pick)
            for result, part in zip(out_of_fold, tables[pick], strict=True):
                result[folds == fold] = part[folds == fold]
        chosen = max(grid, key=lambda weight: quality(weight, np.ones_like(folds, dtype=np.bool_)))
        print(f"{kind}: fold picks {picks}, all dev {chosen}", file=sys.stderr)
        rows = [
            ("dev", out_of_fold[0], tables[grid[0]][0]),
            ("dev+distractors", out_of_fold[1], tables[grid[0]][1]),
            ("own+distractors", table(own, kind, chosen), table(own, kind, grid[0])),
        ]
        for label, candidate, baseline in rows:
            cells = " | ".join(interval.cell() for interval in paired_interval(candidate, baseline))
            means = " | ".join(f"{value:.3f}" for value in candidate.mean(axis=0))
            print(f"| parameter views, {kind} (CV) | {label} | {means} | {cells} |")


if __name__ == "__main__":
    main()
