"""Query handling: a request that describes a task is searched as the whole and as its steps.

Agents often ask the finder for a whole task ("fetch today's news, chart the stock moves and write
a report to /root/report.md"). One vector for that sentence lands between the tools it needs and
near none of them. Splitting it at sentence and clause boundaries gives each step its own vector;
a tool's dense score is its best match over the whole query and the steps. Measured with
`bench/finder_quality.py` ("today without steps"): without them NDCG@10 drops from 0.472 to 0.450
on LiveMCPBench and from 0.404 to 0.388 with the MCP-Zero distractors. Encoding a long task as its
steps only ("steps only past N words") saves work but gained nothing, so it is off by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Sentence ends, line breaks, commas (with an optional "and"/"then") and step connectives.
_BOUNDARY = re.compile(
    r"(?<=[.?!;])\s+|\n+|,\s*(?:and\s+|then\s+)?|\s+(?:and then|then|and also|and|as well as|after that)\s+",
    re.IGNORECASE,
)
_STRIP = " \t.,;:"
MIN_STEP_WORDS = 2
MAX_STEPS = 8


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """The texts to encode for one query: the query itself, then its steps (empty when it has one step).

    `encode_whole` is false for a long task whose steps stand for it (`plan_query(whole_words=...)`).
    """

    text: str
    steps: tuple[str, ...]
    encode_whole: bool = True

    @property
    def texts(self) -> tuple[str, ...]:
        """Everything to encode, the whole query first (unless its steps stand for it)."""
        return (self.text, *self.steps) if self.encode_whole or not self.steps else self.steps


def plan_query(
    query: str, *, split_steps: bool = True, whole_words: int | None = None, max_steps: int = MAX_STEPS
) -> QueryPlan:
    """Split `query` into steps of at least two words, at most `max_steps` of them (the first ones).

    A query with a single step is searched as it is: no extra encoding cost for short queries. A
    query of more than `whole_words` words that has steps is encoded as its steps only.
    """
    text = " ".join(query.split())
    if not split_steps:
        return QueryPlan(text, ())
    steps = [part.strip(_STRIP) for part in _BOUNDARY.split(text) if part]
    steps = [step for step in steps if len(step.split()) >= MIN_STEP_WORDS]
    if len(steps) <= 1:
        return QueryPlan(text, ())
    encode_whole = whole_words is None or len(text.split()) <= whole_words
    return QueryPlan(text, tuple(dict.fromkeys(steps))[:max_steps], encode_whole)
