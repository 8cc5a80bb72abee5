"""Cross-validation by server and paired bootstrap intervals for `finder_quality.py`.

A ranking's constants are only worth what they score on tools they were not chosen on. Folds are
therefore split by *server*: servers that share a task's gold tools are grouped (connected
components), and whole groups go to one fold, so no test task's server was seen while choosing.
A change is reported as the mean per-task difference against the baseline with a 95% interval
from a paired bootstrap over tasks (the same resampled tasks for both rankings).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

METRICS = ("R@1", "R@5", "R@10", "NDCG@10")
TOP = 10
BOOTSTRAP = 4000

Metrics = npt.NDArray[np.float64]  # tasks x METRICS


@dataclass(frozen=True, slots=True)
class Interval:
    mean: float
    low: float
    high: float

    def cell(self) -> str:
        mark = "+" if self.low > 0 else "-" if self.high < 0 else "~"
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] {mark}"


def task_metrics(ranking: Sequence[int], gold: frozenset[int]) -> list[float]:
    """R@1, R@5, R@10 (share of the gold found) and NDCG@10 (binary relevance) of one ranked list."""
    found = [len(gold & set(ranking[:k])) / len(gold) for k in (1, 5, 10)]
    gain = sum(1 / math.log2(rank + 2) for rank, row in enumerate(ranking[:TOP]) if row in gold)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(gold), TOP)))
    return [*found, gain / ideal]


def server_folds(task_servers: Sequence[Sequence[str]], folds: int) -> list[int]:
    """The fold of each task: servers are dealt to folds (busiest first, to the emptiest fold), and a
    task goes to the fold of its main server (the one holding most of its gold tools, listed first).

    Whole servers move together, so a test task's main server was never seen while choosing. Tasks
    that also need a tool of another server can share that server with training tasks: with
    LiveMCPBench's shared servers (files, documents, fetch) strict separation leaves one giant fold.
    """
    main = [servers[0] for servers in task_servers]
    load: dict[str, int] = {}
    for server in main:
        load[server] = load.get(server, 0) + 1
    sizes = [0] * folds
    fold_of: dict[str, int] = {}
    for server in sorted(load, key=lambda server: (-load[server], server)):
        fold = sizes.index(min(sizes))
        fold_of[server] = fold
        sizes[fold] += load[server]
    return [fold_of[server] for server in main]


def paired_interval(candidate: Metrics, baseline: Metrics, seed: int = 17) -> list[Interval]:
    """Per metric: mean of candidate - baseline over tasks, with a 95% paired bootstrap interval."""
    delta = candidate - baseline
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, delta.shape[0], size=(BOOTSTRAP, delta.shape[0]))
    means = delta[samples].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return [Interval(float(delta[:, m].mean()), float(low[m]), float(high[m])) for m in range(delta.shape[1])]


def cross_validate(
    configs: Sequence[str],
    metrics: Callable[[str], Sequence[Metrics]],
    folds: Sequence[int],
    objective: int = METRICS.index("NDCG@10"),
) -> tuple[list[Metrics], list[str]]:
    """Out-of-fold metrics of "pick the best config on the other folds", per catalog, and each fold's pick.

    `metrics(config)` gives one tasks x METRICS array per catalog (the same tasks in each); a config
    is picked by its training-fold `objective` averaged over the catalogs. Ties go to the earlier
    config, so list simpler configs first.
    """
    tables = {config: metrics(config) for config in configs}
    fold_of = np.asarray(folds)
    results = [np.zeros_like(table) for table in tables[configs[0]]]
    picks = []
    for fold in range(int(fold_of.max()) + 1):
        train, test = fold_of != fold, fold_of == fold

        def quality(config: str, train: npt.NDArray[np.bool_] = train) -> tuple[float, int]:
            score = float(np.mean([table[train, objective].mean() for table in tables[config]]))
            return score, -configs.index(config)

        best = max(configs, key=quality)
        picks.append(best)
        for result, table in zip(results, tables[best], strict=True):
            result[test] = table[test]
    return results, picks


def pick(
    configs: Sequence[str], metrics: Callable[[str], Sequence[Metrics]], objective: int = METRICS.index("NDCG@10")
) -> str:
    """The config with the best `objective` over all tasks, averaged over catalogs (ties: the earlier)."""
    return max(
        configs, key=lambda config: (np.mean([t[:, objective].mean() for t in metrics(config)]), -configs.index(config))
    )
