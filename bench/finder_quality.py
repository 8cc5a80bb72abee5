"""How well `intelligent_tool_finder` ranks: LiveMCPBench tasks against their labelled tools.

Run from the repository root::

    python bench/finder_quality.py                 # ~2 minutes on 2 cores (embeds ~3,300 tools once)
    python bench/finder_quality.py --ablation      # also the finder without each of its parts
    python bench/finder_quality.py --no-distractors

Everything goes through the real `ToolIndex` and `Embedder`: the catalog is synced into a LanceDB
directory, then each of the 94 labelled tasks is searched with `method="full-text"`, `"vector"`
and `"hybrid"` (the finder). A second catalog adds the MCP-Zero tools as distractors, skipping any
whose tool name equals a gold tool's or whose server is one of LiveMCPBench's (see the data
README). Metrics: Recall@k is the share of a task's gold tools in the top k, averaged over tasks;
NDCG@10 uses binary relevance. Targets: the finder beats both single methods on every metric, and
reaches Recall@5 >= 0.45 and NDCG@10 >= 0.47 on LiveMCPBench alone.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from aggregator.search import Embedder, Ranking, SearchMode, ToolDocument, ToolIndex  # noqa: E402
from bench._checks import print_checks  # noqa: E402

TOP = 10
RECALL_TARGET = 0.45
NDCG_TARGET = 0.47


@dataclass(frozen=True, slots=True)
class Task:
    query: str
    gold: frozenset[str]


@dataclass(frozen=True, slots=True)
class Scores:
    recall_1: float
    recall_5: float
    recall_10: float
    ndcg_10: float

    def row(self) -> list[float]:
        return [self.recall_1, self.recall_5, self.recall_10, self.ndcg_10]


def exported(server: str, tool: str) -> str:
    return f"{server}__{tool}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def document(record: dict[str, Any]) -> ToolDocument:
    return ToolDocument(
        name=exported(record["server"], record["tool"]),
        server=record["server"],
        title=None,
        description=record.get("description") or "",
        input_schema=record.get("input_schema") or {},
        server_description=record.get("server_description") or "",
    )


def load(data: Path) -> tuple[list[ToolDocument], list[ToolDocument], list[Task]]:
    """The LiveMCPBench catalog, the filtered MCP-Zero distractors, and the labelled tasks."""
    tools = read_jsonl(data / "livemcpbench" / "tools.jsonl")
    tasks = [
        Task(record["query"], frozenset(exported(*gold.split("/", 1)) for gold in record["gold"]))
        for record in read_jsonl(data / "livemcpbench" / "queries.jsonl")
        if record["gold"]
    ]
    gold_tools = {name.split("__", 1)[1] for task in tasks for name in task.gold}
    servers = {record["server"] for record in tools}
    distractors = [
        record
        for record in read_jsonl(data / "mcpzero_tools" / "tools.jsonl")
        if record["tool"] not in gold_tools and record["server"] not in servers
    ]
    return unique(map(document, tools)), unique(map(document, distractors)), tasks


def unique(documents: Any) -> list[ToolDocument]:
    seen: dict[str, ToolDocument] = {}
    for item in documents:
        seen.setdefault(item.name, item)
    return list(seen.values())


def score(rankings: Sequence[Sequence[str]], tasks: Sequence[Task]) -> Scores:
    totals = [0.0, 0.0, 0.0, 0.0]
    for ranking, task in zip(rankings, tasks, strict=True):
        for position, k in enumerate((1, 5, 10)):
            totals[position] += len(task.gold & set(ranking[:k])) / len(task.gold)
        gain = sum(1 / math.log2(rank + 2) for rank, name in enumerate(ranking[:TOP]) if name in task.gold)
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(task.gold), TOP)))
        totals[3] += gain / ideal
    return Scores(*(total / len(tasks) for total in totals))


async def evaluate(index: ToolIndex, tasks: Sequence[Task], names: frozenset[str], method: SearchMode) -> Scores:
    rankings = []
    for task in tasks:
        result = await index.search(task.query, allowed=names, top_k=TOP, method=method)
        rankings.append([hit.name for hit in result.hits])
    return score(rankings, tasks)


def table(rows: list[tuple[str, str, Scores]]) -> str:
    lines = ["| catalog | method | R@1 | R@5 | R@10 | NDCG@10 |", "|---|---|---|---|---|---|"]
    for catalog, method, scores in rows:
        lines.append(f"| {catalog} | {method} | " + " | ".join(f"{value:.3f}" for value in scores.row()) + " |")
    return "\n".join(lines)


ABLATIONS = {
    "finder fused by RRF (k=60)": Ranking(rrf_k=60),
    "finder without step splitting": Ranking(split_steps=False),
    "finder without server similarity": Ranking(server_weight=0.0),
    "vector, whole query, no server": Ranking(split_steps=False, server_weight=0.0),
}


async def run(arguments: argparse.Namespace) -> int:
    base, distractors, tasks = load(arguments.data)
    embedder = Embedder()
    started = time.perf_counter()
    await embedder.load()
    print(f"model loaded in {time.perf_counter() - started:.1f} s; {len(tasks)} tasks", file=sys.stderr)
    catalogs = [("LiveMCPBench", base)]
    if not arguments.no_distractors:
        catalogs.append((f"+ MCP-Zero distractors ({len(base) + len(distractors)} tools)", base + distractors))
    rows: list[tuple[str, str, Scores]] = []
    checks: list[tuple[str, bool]] = []
    with tempfile.TemporaryDirectory(prefix="finder-quality-") as scratch:
        for position, (label, documents) in enumerate(catalogs):
            uri = Path(arguments.db or scratch) / f"catalog-{position}"
            async with ToolIndex(uri, embedder) as index:
                report = await index.sync(documents)
                print(f"{label}: {report}", file=sys.stderr)
                names = frozenset(item.name for item in documents)
                results = {m: await evaluate(index, tasks, names, m) for m in ("full-text", "vector", "hybrid")}
                rows += [(label, "full-text", results["full-text"]), (label, "vector", results["vector"])]
                rows.append((label, "finder (hybrid)", results["hybrid"]))
                if arguments.ablation:
                    for name, ranking in ABLATIONS.items():
                        index.ranking = ranking
                        method: SearchMode = "vector" if name.startswith("vector") else "hybrid"
                        rows.append((label, name, await evaluate(index, tasks, names, method)))
                    index.ranking = replace(Ranking())
                columns = zip(results["hybrid"].row(), results["full-text"].row(), results["vector"].row(), strict=True)
                beats = all(finder > max(text, vector) for finder, text, vector in columns)
                checks.append((f"{label}: finder beats full-text and vector on every metric", beats))
                if position == 0:
                    checks.append((f"Recall@5 >= {RECALL_TARGET}", results["hybrid"].recall_5 >= RECALL_TARGET))
                    checks.append((f"NDCG@10 >= {NDCG_TARGET}", results["hybrid"].ndcg_10 >= NDCG_TARGET))
    print(table(rows))
    return print_checks(checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data")
    parser.add_argument("--db", type=Path, help="keep the LanceDB directories here (re-runs skip embedding)")
    parser.add_argument("--no-distractors", action="store_true", help="only the LiveMCPBench catalog")
    parser.add_argument("--ablation", action="store_true", help="also rank without each part of the finder")
    arguments = parser.parse_args()
    sys.exit(anyio.run(run, arguments))


if __name__ == "__main__":
    main()
