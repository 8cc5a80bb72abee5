"""How well `intelligent_tool_finder` ranks, cross-validated by server, with paired bootstrap intervals.

Run from the repository root::

    python bench/finder_quality.py            # ~2-4 minutes on 2 cores once vectors are cached
    python bench/finder_quality.py --folds 5 --cache /tmp/finder-bench-cache

Four sets, each through the real `ToolIndex` and `Embedder`:

* dev: LiveMCPBench (527 tools, 94 labelled multi-step tasks);
* dev + distractors: the same tasks over LiveMCPBench plus the MCP-Zero pool (~3.3k tools), minus
  distractors whose tool name equals a gold tool's or whose server is one of LiveMCPBench's;
* own: `bench/data/mcpzero_prompts.jsonl`, 106 single-tool prompts written over the MCP-Zero pool
  before the finder was run on them, with LiveMCPBench as distractors. Report-only: nothing is
  chosen on it;
* siblings: `bench/data/siblings.jsonl`, 98 single-tool prompts for one of several sibling tools
  (get / list / create / update / delete / search of one object), over the same catalog as own.
  Report-only as well.

Each catalog is also built with every description's negative clauses taken out
(`documents.without_negative_clauses`), to measure that text recipe against today's.

Each task's evidence (dense, server and full-text scores of every tool, `ToolIndex.evidence`) is
gathered once; rankings are then fused and cut offline with the same `ranking.ranked_rows` the
index uses (which also re-sorts siblings, `siblings.py`).
Rankings with constants are judged by 5-fold cross-validation over folds split by server
(`_crossval.py`): each fold's constants are chosen on the other folds. Every row shows its mean
difference from today's ranking (`ranking.TODAY`) with a 95% paired bootstrap interval; `+` means
the interval clears zero. Vectors of the tool texts are cached under `--cache` (content-addressed,
so a changed text is the only one embedded again). Finally the shipped default `Ranking()` is run
end to end through `ToolIndex.search` and must agree with the offline fusion. Issue 17's changes
(sibling bonus, full-text margin, negative clauses out) get a table of their own on all four sets,
and so do the multi-step changes (server coherence, step coverage, round-robin of the steps'
rankings; `multistep.py`), against the ranking shipped before them (`BEFORE_MULTISTEP`). For step
coverage each task's texts are also scored one by one (`Evidence.text_dense`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import anyio
import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from aggregator.search import Embedder, Ranking, ToolDocument, ToolIndex  # noqa: E402
from aggregator.search.documents import without_negative_clauses  # noqa: E402
from aggregator.search.query import plan_query  # noqa: E402
from aggregator.search.ranking import TODAY  # noqa: E402
from bench._checks import print_checks  # noqa: E402
from bench._crossval import METRICS, TOP, cross_validate, paired_interval, server_folds  # noqa: E402
from bench._finder_bench import Bench, family_lines, header, plan_settings, rank, row, summary  # noqa: E402
from bench._finder_data import Catalog, load_catalogs, seeded_index  # noqa: E402
from bench._multistep import BEFORE_MULTISTEP, multistep_analysis, multistep_lines  # noqa: E402

WHOLE_WORDS = (12, 20, 30)
HALVES = {"full-text only": TODAY, "vector only": TODAY}
SINGLE_CHANGES = {
    "today without server similarity": replace(TODAY, server_weight=0.0),
    "today without steps": replace(TODAY, split_steps=False),
    **{f"today, steps only past {n} words": replace(TODAY, whole_query_words=n) for n in WHOLE_WORDS},
}
FUSIONS = ("weighted", "rrf", "minmax")
SIBLING_BONUSES = (0.01, 0.02, 0.05, 0.1, 0.2, 1.0)
FULL_TEXT_MARGINS = (0.3, 0.2, 0.15, 0.1, 0.05)
CLAUSES_OUT = " [negative clauses out]"
GUARD = 0.02  # the finder may trail its better half by at most this much R@5


def grid() -> dict[str, Ranking]:
    """Every ranking the cross-validation may pick, simplest first."""
    configs: dict[str, Ranking] = {"today": TODAY}
    for server in (0.0, 0.15, 0.3):
        for weight in (0.1, 0.2, 0.3, 0.5, 0.8):
            configs[f"weighted s={server} t={weight}"] = replace(TODAY, server_weight=server, full_text_weight=weight)
        for weight in (0.1, 0.2, 0.3, 0.4, 0.5):
            for depth in (10, 30, 100):
                configs[f"minmax d={depth} s={server} t={weight}"] = replace(
                    TODAY, fusion="minmax", minmax_depth=depth, server_weight=server, full_text_weight=weight
                )
        for k in (5, 10, 20, 40, 60):
            for weight in (0.5, 0.75, 1.0):
                configs[f"rrf k={k} s={server} t={weight}"] = replace(
                    TODAY, fusion="rrf", rrf_k=k, server_weight=server, full_text_weight=weight
                )
    return configs


def issue_families() -> dict[str, dict[str, Ranking]]:
    """Issue 17's sibling and full-text changes: each family is searched per fold, today first."""
    bonuses = {f"sibling bonus {b}": replace(TODAY, sibling_bonus=b) for b in SIBLING_BONUSES}
    margins = {f"full-text margin {m}": replace(TODAY, full_text_margin=m) for m in FULL_TEXT_MARGINS}
    return {
        "sibling bonus 0.01-1 (CV)": {"today": TODAY, **bonuses},
        "full-text only within a dense margin 0.05-0.3 (CV)": {"today": TODAY, **margins},
    }


async def run(arguments: argparse.Namespace) -> int:
    embedder = Embedder()
    started = time.perf_counter()
    await embedder.load()
    print(f"model loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    prompts = REPOSITORY / "bench" / "data"
    catalogs = load_catalogs(arguments.data, prompts / "mcpzero_prompts.jsonl", prompts / "siblings.jsonl")
    variants = load_catalogs(
        arguments.data,
        prompts / "mcpzero_prompts.jsonl",
        prompts / "siblings.jsonl",
        without_negative_clauses,
        CLAUSES_OUT,
    )
    configs = grid()
    rankings = [*configs.values(), *SINGLE_CHANGES.values(), Ranking()]
    settings = {plan_settings(ranking) for ranking in rankings}
    bench = Bench(catalogs, embedder)
    checks: list[tuple[str, bool]] = []
    with tempfile.TemporaryDirectory(prefix="finder-quality-") as scratch:
        for group, group_settings in ((catalogs, settings), (variants, {plan_settings(TODAY)})):
            for documents in unique_documents(group):
                started = time.perf_counter()
                sharing = [catalog for catalog in group if catalog.documents is documents]
                directory = Path(scratch) / sharing[0].label
                async with seeded_index(directory, sharing[0], embedder, arguments.cache) as index:
                    for catalog in sharing:
                        await bench.gather(catalog, index, group_settings)
                        if group is catalogs:
                            online = await end_to_end(index, catalog, bench)
                            checks.append((f"{catalog.label}: ToolIndex.search agrees with the offline fusion", online))
                shared_by = ", ".join(catalog.label for catalog in sharing)
                elapsed = time.perf_counter() - started
                print(f"{shared_by}: {len(documents)} tools, evidence in {elapsed:.0f} s", file=sys.stderr)
    dev = [catalog for catalog in catalogs if not catalog.report_only]
    own = [catalog for catalog in catalogs if catalog.report_only]
    folds = server_folds([task.servers for task in dev[0].tasks], arguments.folds)
    print(f"\nFolds by server: {arguments.folds} folds of {np.bincount(folds).tolist()} tasks\n")
    families = {f"{fusion} (CV)": [label for label in configs if label.startswith(fusion)] for fusion in FUSIONS}
    families["any (CV)"] = list(configs)
    baseline = [bench.metrics(catalog, "today", TODAY) for catalog in dev]
    lines = header("ranking", "catalog")
    for catalog, table in zip(dev, baseline, strict=True):
        lines.append(f"| today | {catalog.label} | {summary(table)} |" + " |" * len(METRICS))
        for half, ranking in HALVES.items():
            lines.append(row(half, catalog.label, bench.metrics(catalog, half, ranking, half), table))
    for family, labels in families.items():
        tables, picks = cross_validate(
            labels, lambda label: [bench.metrics(c, label, configs[label]) for c in dev], folds
        )
        print(f"{family}: fold picks {picks}")
        for catalog, table, base in zip(dev, tables, baseline, strict=True):
            lines.append(row(family, catalog.label, table, base))
    shipped = Ranking()
    for label, ranking in SINGLE_CHANGES.items():
        for catalog in catalogs:
            base = bench.metrics(catalog, "today", TODAY)
            lines.append(row(label, catalog.label, bench.metrics(catalog, label, ranking), base))
    for catalog, base in zip(dev, baseline, strict=True):
        lines.append(row("shipped Ranking()", catalog.label, bench.metrics(catalog, "shipped", shipped), base))
    for catalog in own:
        base = bench.metrics(catalog, "today", TODAY)
        lines.append(f"| today | {catalog.label} | {summary(base)} |" + " |" * len(METRICS))
        for half, ranking in HALVES.items():
            lines.append(row(half, catalog.label, bench.metrics(catalog, half, ranking, half), base))
        lines.append(row("shipped Ranking()", catalog.label, bench.metrics(catalog, "shipped", shipped), base))
    print("\n" + "\n".join(lines))
    print("\n" + "\n".join(issue_lines(bench, catalogs, variants, folds)))
    print("\n" + "\n".join(multistep_analysis(bench, dev)))
    print("\n" + "\n".join(multistep_lines(bench, catalogs, folds)))
    shipped_before = {c.label: bench.metrics(c, "before multi-step", BEFORE_MULTISTEP) for c in catalogs}
    for catalog in catalogs:
        single = [len(plan_query(task.query).texts) == 1 for task in catalog.tasks]
        same = all(
            rank(evidence, shipped, bench.snapshots[catalog.label], task.query)
            == rank(evidence, BEFORE_MULTISTEP, bench.snapshots[catalog.label], task.query)
            for task, evidence, one in zip(
                catalog.tasks, bench.evidence[(catalog.label, plan_settings(shipped))], single, strict=True
            )
            if one
        )
        checks.append(
            (f"{catalog.label}: {sum(single)} single-step queries rank as before the multi-step changes", same)
        )
        intervals = paired_interval(bench.metrics(catalog, "shipped", shipped), shipped_before[catalog.label])
        checks.append(
            (
                f"{catalog.label}: shipped no worse than before the multi-step changes at the 95% level",
                all(i.high >= 0 for i in intervals),
            )
        )
    for catalog in catalogs:
        finder = bench.metrics(catalog, "shipped", shipped).mean(axis=0)[1]
        better = max(bench.metrics(catalog, h, r, h).mean(axis=0)[1] for h, r in HALVES.items())
        checks.append(
            (
                f"{catalog.label}: finder R@5 {finder:.3f} >= better half {better:.3f} - {GUARD}",
                finder >= better - GUARD,
            )
        )
    for catalog, base in zip(dev, baseline, strict=True):
        intervals = paired_interval(bench.metrics(catalog, "shipped", shipped), base)
        checks.append(
            (f"{catalog.label}: no metric worse than today at the 95% level", all(i.high >= 0 for i in intervals))
        )
    return print_checks(checks)


def unique_documents(catalogs: Sequence[Catalog]) -> list[list[ToolDocument]]:
    """Each distinct document list once (the own and sibling sets share one catalog, so one index)."""
    return list({id(catalog.documents): catalog.documents for catalog in catalogs}.values())


def issue_lines(bench: Bench, catalogs: Sequence[Catalog], variants: Sequence[Catalog], folds: list[int]) -> list[str]:
    """Issue 17's changes against today on every set: families cross-validated on dev, the report-only
    sets with the setting picked on all dev tasks, and the negative-clause text recipe."""
    lines = header("change", "set")
    for catalog in catalogs:
        lines.append(f"| today | {catalog.label} | {summary(bench.metrics(catalog, 'today', TODAY))} |" + " |" * 4)
    lines += family_lines(bench, catalogs, folds, issue_families())
    for catalog, variant in zip(catalogs, variants, strict=True):
        table = bench.metrics(variant, "today", TODAY)
        lines.append(row("negative clauses out", catalog.label, table, bench.metrics(catalog, "today", TODAY)))
    return lines


async def end_to_end(index: ToolIndex, catalog: Catalog, bench: Bench) -> bool:
    """Whether `ToolIndex.search` with the default ranking returns what the offline fusion ranks."""
    index.ranking = Ranking()
    evidences = bench.evidence[(catalog.label, plan_settings(index.ranking))]
    allowed = frozenset(index.names)
    for task, evidence in zip(catalog.tasks, evidences, strict=True):
        result = await index.search(task.query, allowed=allowed, top_k=TOP)
        expected = rank(evidence, index.ranking, index.snapshot, task.query)
        if [hit.name for hit in result.hits] != [index.names[row] for row in expected]:
            print(f"offline and online rankings differ for {task.query!r}", file=sys.stderr)
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "finder-bench-cache")
    parser.add_argument("--folds", type=int, default=5)
    arguments = parser.parse_args()
    sys.exit(anyio.run(run, arguments))


if __name__ == "__main__":
    main()
