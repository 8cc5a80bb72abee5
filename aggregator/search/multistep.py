"""Multi-step tasks: tools of one server rise together, and each step gets a say in the top places.

A task such as "load the audio file, track its beats and compute its MFCCs" needs several tools,
and they often live on one server (on LiveMCPBench 54 of the 79 tasks with several gold tools have
two or more on one server). The fused ranking scores each tool against the task's best text, so
the second and third tools of a server the task clearly needs can trail tools of other servers
that match one phrase well. Two adjustments, each off at weight 0, both only for a request that
splits into two or more steps (`query.plan_query`), so a single-step request ranks as before:

* `server_coherence`: a tool gains `weight` x the best score among its server's eligible tools,
  so a server that some step points to strongly lifts its other tools with it;
* `step_coverage`: a tool gains `weight` x how close it comes to being some text's best tool
  (0 for the best tool of some step, negative otherwise), so each step's best tools move up.

Measured in `bench/finder_quality.py` (docs/finder.md, "Multi-step tasks").
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float32]
Servers = npt.NDArray[np.intp]


def server_coherence(scores: Scores, servers: Servers, weight: float) -> Scores:
    """`scores` plus `weight` x the best score of each tool's server (its own included).

    Tools of one server keep their order among themselves; what moves is how a server's tools
    stand against other servers' tools: one strong tool carries its siblings up.
    """
    if not weight or scores.size == 0:
        return scores
    _, server_of = np.unique(servers, return_inverse=True)
    best = np.full(int(server_of.max()) + 1, -np.inf, dtype=np.float32)
    np.maximum.at(best, server_of, scores)
    return (scores + np.float32(weight) * best[server_of]).astype(np.float32)


def step_coverage(scores: Scores, by_text: Scores, weight: float) -> Scores:
    """`scores` plus `weight` x each tool's smallest distance below the best tool of some text.

    `by_text` holds one row per query text (the whole request and its steps), each the fused
    score of every tool against that text alone. A tool that is some step's best loses nothing;
    one that is far below every text's best loses `weight` x that distance. Comparing a tool with
    each text's own best puts the steps on one footing: a step that matches nothing well still
    has its best tools raised next to those of a step that matches one tool closely.
    """
    if not weight or scores.size == 0 or by_text.shape[0] < 2:
        return scores
    nearest: Scores = (by_text - by_text.max(axis=1, keepdims=True)).max(axis=0)
    return (scores + np.float32(weight) * nearest).astype(np.float32)
