"""The finder quality benchmark's multi-step part: where dev tasks' gold tools sit, and the multi-step
changes (`aggregator/search/multistep.py`, and a round-robin of the steps' rankings) against the
ranking shipped before them, on every set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from aggregator.search import Ranking
from aggregator.search.query import plan_query
from aggregator.search.ranking import TODAY, Evidence, fuse_by_text, fuse_evidence, ranked_rows, top
from aggregator.search.snapshot import Snapshot
from bench._crossval import TOP
from bench._finder_bench import Bench, family_lines, header, plan_settings, rank, row, summary
from bench._finder_data import Catalog

BEFORE_MULTISTEP = replace(TODAY, sibling_bonus=0.05)
"""The shipped ranking before the multi-step changes: the baseline of their table."""
COHERENCE = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
COVERAGE = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 3.0)
ROUND_ROBIN = "round-robin: the fused list, then each text's list"


def multistep_families() -> dict[str, dict[str, Ranking]]:
    """The multi-step changes (`multistep.py`) on top of the ranking shipped before them, that ranking first."""
    before = {"before multi-step": BEFORE_MULTISTEP}
    coherence = {f"server coherence {w}": replace(BEFORE_MULTISTEP, server_coherence=w) for w in COHERENCE}
    coverage = {f"step coverage {w}": replace(BEFORE_MULTISTEP, step_coverage=w) for w in COVERAGE}
    both = {
        f"coherence {c} + coverage {w}": replace(BEFORE_MULTISTEP, server_coherence=c, step_coverage=w)
        for c in (0.2, 0.3, 0.5)
        for w in (0.1, 0.2, 0.5)
    }
    return {
        "server coherence 0.1-1 (CV)": {**before, **coherence},
        "step coverage 0.05-3 (CV)": {**before, **coverage},
        "coherence 0.2-0.5 x coverage 0.1-0.5 (CV)": {**before, **both},
    }


def multistep_analysis(bench: Bench, dev: Sequence[Catalog]) -> list[str]:
    """How a task's gold tools share servers, and where the ranking shipped before the multi-step
    changes puts them: in the fused top 10, in some text's own top 10, or how deep when missed."""
    lines = []
    for catalog in dev:
        snapshot = bench.snapshots[catalog.label]
        rows = {name: row for row, name in enumerate(bench.names[catalog.label])}
        evidences = bench.evidence[(catalog.label, plan_settings(BEFORE_MULTISTEP))]
        several = sharing = found = by_text = total = 0
        missed: list[int] = []
        for task, evidence in zip(catalog.tasks, evidences, strict=True):
            gold = {rows[name] for name in task.gold if name in rows}
            servers = [int(snapshot.tool_server[row]) for row in gold]
            several += len(gold) > 1
            sharing += len(gold) > 1 and len(set(servers)) < len(servers)
            ranked = rank(evidence, BEFORE_MULTISTEP, snapshot, task.query)
            scores = fuse_evidence(evidence, BEFORE_MULTISTEP)
            in_text_top = {
                row
                for scores_of_text in fuse_by_text(evidence, BEFORE_MULTISTEP)
                for row in evidence.rows[top(scores_of_text, TOP)].tolist()
            }
            total += len(gold)
            found += len(gold & set(ranked))
            by_text += len((gold - set(ranked)) & in_text_top)
            position = {row: place for place, row in enumerate(evidence.rows[top(scores, scores.size)].tolist(), 1)}
            missed += [position[row] for row in gold - set(ranked)]
        depth = np.asarray(missed)
        lines.append(
            f"{catalog.label}: {sharing} of {several} tasks with several gold tools have 2+ on one server; "
            f"gold in the top 10: {found} of {total}; of the {len(missed)} missed, {by_text} are in some text's "
            f"own top 10; fused rank of the missed: 11-20 {int(((depth > 10) & (depth <= 20)).sum())}, "
            f"21-50 {int(((depth > 20) & (depth <= 50)).sum())}, 51-100 {int(((depth > 50) & (depth <= 100)).sum())}, "
            f"> 100 {int((depth > 100).sum())}"
        )
    return lines


def round_robin(evidence: Evidence, ranking: Ranking, snapshot: Snapshot, query: str, depth: int = 40) -> list[int]:
    """For a request with steps, the fused ranking and each text's own ranking interleaved, first
    places first (a tool already taken is skipped); a single-step request ranks as `rank` does."""
    fused = [row for row, _ in ranked_rows(snapshot, evidence, query, ranking, depth)]
    if len(plan_query(query).texts) < 2:
        return fused[:TOP]
    lists = [fused, *(evidence.rows[top(scores, depth)].tolist() for scores in fuse_by_text(evidence, ranking))]
    found: list[int] = []
    for place in range(depth):
        for ranked in lists:
            if place < len(ranked) and ranked[place] not in found:
                found.append(ranked[place])
    return found[:TOP]


def multistep_lines(bench: Bench, catalogs: Sequence[Catalog], folds: list[int]) -> list[str]:
    """The multi-step changes against the ranking shipped before them, on every set."""
    lines = header("change", "set")
    for catalog in catalogs:
        table = bench.metrics(catalog, "before multi-step", BEFORE_MULTISTEP)
        lines.append(f"| before multi-step | {catalog.label} | {summary(table)} |" + " |" * 4)
    lines += family_lines(bench, catalogs, folds, multistep_families())
    for catalog in catalogs:
        table = bench.metrics(catalog, ROUND_ROBIN, BEFORE_MULTISTEP, ranker=round_robin)
        lines.append(
            row(ROUND_ROBIN, catalog.label, table, bench.metrics(catalog, "before multi-step", BEFORE_MULTISTEP))
        )
    return lines
