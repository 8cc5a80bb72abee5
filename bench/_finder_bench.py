"""The finder quality benchmark's evidence and tables: gathered once per catalog, scored for any ranking offline.

`Bench` holds each task's evidence (`ToolIndex.evidence` plus each query text's own scores) and
caches each ranking's metrics; `row` and `family_lines` print rankings against a baseline with
95% paired bootstrap intervals (`_crossval.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

import numpy as np

from aggregator.search import Embedder, Ranking, ToolIndex
from aggregator.search.query import plan_query
from aggregator.search.ranking import TODAY, Evidence, ranked_rows, view_scores_by_text
from aggregator.search.snapshot import Snapshot
from bench._crossval import METRICS, TOP, Metrics, cross_validate, paired_interval, pick
from bench._finder_data import Catalog

PlanSettings = tuple[bool, int | None]
Ranker = Callable[[Evidence, Ranking, Snapshot, str], list[int]]
"""Ranks one task's evidence: the rows of its top `TOP`, best first."""


def plan_settings(ranking: Ranking) -> PlanSettings:
    """The settings of `ranking` that change what is searched, not how the evidence is fused."""
    return ranking.split_steps, ranking.whole_query_words


def rank(evidence: Evidence, ranking: Ranking, snapshot: Snapshot, query: str) -> list[int]:
    """What the finder ranks: `ranking.ranked_rows`, as `ToolIndex.search` calls it."""
    return [row for row, _ in ranked_rows(snapshot, evidence, query, ranking, TOP)]


class Bench:
    """Gathers evidence per catalog and plan setting once, then scores any ranking offline."""

    def __init__(self, catalogs: Sequence[Catalog], embedder: Embedder) -> None:
        self.catalogs = catalogs
        self.embedder = embedder
        self.evidence: dict[tuple[str, PlanSettings], list[Evidence]] = {}
        self.names: dict[str, tuple[str, ...]] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self._cache: dict[tuple[str, str, str], Metrics] = {}

    async def gather(self, catalog: Catalog, index: ToolIndex, settings: Collection[PlanSettings]) -> None:
        self.names[catalog.label] = index.names
        self.snapshots[catalog.label] = index.snapshot
        allowed = frozenset(index.names)
        for split, whole_words in settings:
            index.ranking = replace(TODAY, split_steps=split, whole_query_words=whole_words)
            found = [await self.each_text(index, task.query, allowed) for task in catalog.tasks]
            self.evidence[(catalog.label, (split, whole_words))] = found

    async def each_text(self, index: ToolIndex, query: str, allowed: frozenset[str]) -> Evidence:
        """`ToolIndex.evidence` plus the dense and server scores of each of the query's texts alone."""
        evidence = await index.evidence(query, allowed=allowed, top_k=TOP)
        ranking = index.ranking
        plan = plan_query(
            query, split_steps=ranking.split_steps, whole_words=ranking.whole_query_words, max_steps=ranking.max_steps
        )
        vectors = await self.embedder.encode_queries(plan.texts)  # from the query cache: evidence encoded them
        text_dense, text_server = view_scores_by_text(index.snapshot, evidence.rows, vectors)
        return replace(evidence, text_dense=text_dense, text_server=text_server)

    def metrics(
        self, catalog: Catalog, label: str, ranking: Ranking, half: str | None = None, ranker: Ranker = rank
    ) -> Metrics:
        """Each task's metrics for `ranking` (cached under `label`); `half` keeps one half of the evidence."""
        key = (catalog.label, label, half or "")
        if key not in self._cache:
            rows = {name: row for row, name in enumerate(self.names[catalog.label])}
            evidences = self.evidence[(catalog.label, plan_settings(ranking))]
            snapshot = self.snapshots[catalog.label]
            table = []
            for task, evidence in zip(catalog.tasks, evidences, strict=True):
                if half == "full-text only":
                    evidence = replace(evidence, dense=None, server=None)
                elif half == "vector only":
                    evidence = replace(evidence, full_text=None)
                table.append(task.metrics(ranker(evidence, ranking, snapshot, task.query), rows))
            self._cache[key] = np.asarray(table, dtype=np.float64)
        return self._cache[key]


def summary(table: Metrics) -> str:
    return " | ".join(f"{value:.3f}" for value in table.mean(axis=0))


def header(first: str, second: str) -> list[str]:
    """A table's header and rule: `first`, `second`, the metrics, then their differences with intervals."""
    columns = f"| {first} | {second} | " + " | ".join(METRICS) + " | " + " | ".join(f"Δ{m} [95% CI]" for m in METRICS)
    return [columns + " |", "|" + "---|" * (2 + 2 * len(METRICS))]


def row(label: str, catalog: str, table: Metrics, baseline: Metrics) -> str:
    intervals = paired_interval(table, baseline)
    return f"| {label} | {catalog} | {summary(table)} | " + " | ".join(i.cell() for i in intervals) + " |"


def family_lines(
    bench: Bench, catalogs: Sequence[Catalog], folds: list[int], families: dict[str, dict[str, Ranking]]
) -> list[str]:
    """Each family cross-validated on dev, then its pick on all dev tasks on the report-only sets, then
    every setting on every set; all against the family's first ranking."""
    dev = [catalog for catalog in catalogs if not catalog.report_only]
    reports = [catalog for catalog in catalogs if catalog.report_only]
    lines = []
    for family, configs in families.items():
        labels = list(configs)
        first = labels[0]

        def on_dev(label: str, configs: dict[str, Ranking] = configs) -> list[Metrics]:
            return [bench.metrics(catalog, label, configs[label]) for catalog in dev]

        tables, picks = cross_validate(labels, on_dev, folds)
        chosen = pick(labels, on_dev)
        print(f"{family}: fold picks {picks}; on all dev tasks {chosen!r}")
        for catalog, table in zip(dev, tables, strict=True):
            lines.append(row(family, catalog.label, table, bench.metrics(catalog, first, configs[first])))
        for catalog in reports:
            table = bench.metrics(catalog, chosen, configs[chosen])
            lines.append(
                row(f"{family}: {chosen}", catalog.label, table, bench.metrics(catalog, first, configs[first]))
            )
        for label in labels[1:]:
            for catalog in catalogs:
                table = bench.metrics(catalog, label, configs[label])
                lines.append(row(label, catalog.label, table, bench.metrics(catalog, first, configs[first])))
    return lines
