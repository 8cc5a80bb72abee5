"""Learning from use: which tool callers call after a finder answer, as a bounded, decaying prior.

When a caller asks `intelligent_tool_finder` and then calls one of the tools it was shown, the
pair (query, tool) is evidence that the tool answers that query. `UsagePrior` keeps those pairs
and adds a small bonus to the tool's score the next time anyone asks the same query
(after normalisation: case, punctuation and spacing do not matter).

    prior = UsagePrior.load(data_dir / "finder-prior.json")
    result = await learned_search(index, prior, caller, query, allowed=names, top_k=5)  # remembers what it showed
    prior.called(caller, "weather__get_forecast")     # the caller called a tool it was shown: the pair is learned
    # The next search for that query, by anyone, gets the tool's bonus (`rerank`) among its own allowed tools.

What it stores is principal-blind: an unkeyed hash of the normalised query, the tool's exported
name, a weight, the time of the last update and the rank the tool had. Who asked stays in memory
only, as an HMAC of the caller's identity under a key made at start-up (`Bounds.callers` of
them, least recently seen dropped first), and only to match a call to that caller's own recent
answers and to bound what one caller may contribute.

Bounds (`Bounds`): a pair's bonus is at most `max_boost` (reached after `full_weight` calls);
weights halve every `half_life` seconds; one caller adds at most one call per pair and at most
`pairs_per_window` pairs per `window` seconds. So one caller can move a tool by at most
`max_boost / full_weight` per window and never by more than `max_boost`. The prior only reorders
the hits it is given, which the index already restricted to what the caller may call: it never
adds a tool.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aggregator.config.files import write_atomically
from aggregator.search.index import ToolIndex
from aggregator.search.results import SearchHit, SearchResult

logger = logging.getLogger(__name__)

VERSION = 1
MAX_DEPTH = 50
"""The deepest a search goes to find learned tools (the finder's largest `top_k`)."""
_NOT_WORDS = re.compile(r"[\W_]+")

Caller = tuple[str, str]
"""Who asked, as (issuer, subject): turned into an opaque in-memory key at once, never stored."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much the prior may learn and move, and how fast it forgets (defaults documented in docs/finder.md)."""

    max_boost: float = 0.3
    """The most a tool's score can gain: the full-text half's weight, so consistent use counts as much as a
    perfect keyword match and never more (hybrid scores span about 0 to 1.6)."""
    full_weight: float = 3.0
    """Calls (decayed) at which a pair gives its full bonus; also the cap of a pair's weight."""
    half_life: float = 14 * 86_400.0
    window: float = 3_600.0
    pairs_per_window: int = 20
    answer_seconds: float = 900.0
    """How long after a finder answer a call is matched to it."""
    answers_per_caller: int = 4
    callers: int = 4_096
    pairs: int = 20_000
    tools_per_query: int = 64
    floor: float = 0.05
    """Pairs whose decayed weight falls below this are forgotten."""


@dataclass(slots=True)
class Pair:
    """One learned (query hash, tool) pair: its weight at `updated` (seconds since the epoch) and last rank."""

    weight: float
    updated: float
    rank: int


@dataclass(slots=True)
class _Answer:
    query: str
    ranks: dict[str, int]
    time: float
    used: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _CallerState:
    answers: deque[_Answer]
    window_start: float = -math.inf
    contributed: set[tuple[str, str]] = field(default_factory=set)


async def learned_search(
    index: ToolIndex,
    prior: UsagePrior | None,
    caller: Caller,
    query: str,
    *,
    allowed: Collection[str],
    top_k: int,
    servers: Collection[str] | None = None,
    tags: Collection[str] | None = None,
) -> SearchResult:
    """`index.search` for `caller`, reordered by `prior` (if any), which then remembers what `caller` was shown."""
    depth = top_k if prior is None else prior.depth(query, top_k)
    result = await index.search(query, allowed=allowed, top_k=depth, servers=servers, tags=tags)
    if prior is None:
        return result
    hits = prior.rerank(query, result.hits, top_k, allowed)
    prior.answered(caller, query, [hit.name for hit in hits])
    return replace(result, hits=hits)


def query_key(query: str) -> str:
    """The hash a query is stored under: its words, case-folded, without punctuation."""
    words = _NOT_WORDS.sub(" ", unicodedata.normalize("NFKC", query).casefold()).split()
    return hashlib.blake2b(" ".join(words).encode(), digest_size=16, person=b"finder-prior-v1").hexdigest()


class UsagePrior:
    """The learned (query, tool) pairs and the in-memory record of who was answered what; see the module."""

    def __init__(
        self, path: Path | None = None, bounds: Bounds | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.bounds = bounds or Bounds()
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._queries: dict[str, dict[str, Pair]] = {}
        self._size = 0
        self._callers: OrderedDict[bytes, _CallerState] = OrderedDict()
        self.dirty = False
        """Whether pairs changed since the last `save` (the finder saves in the background)."""

    @classmethod
    def load(cls, path: Path, bounds: Bounds | None = None, clock: Callable[[], float] = time.time) -> UsagePrior:
        """The prior saved at `path`; empty if there is none, or if the file is damaged (logged, naming it)."""
        prior = cls(path, bounds, clock)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return prior
        except OSError as error:
            logger.warning("finder.prior_ignored", extra={"file": str(path), "reason": str(error)})
            return prior
        try:
            prior._restore(json.loads(text))
        except (ValueError, TypeError, KeyError) as error:
            prior._queries, prior._size = {}, 0
            reason = f"not a finder prior file: {error}"
            logger.warning("finder.prior_ignored", extra={"file": str(path), "reason": reason})
        return prior

    def __len__(self) -> int:
        return self._size

    def answered(self, caller: Caller, query: str, names: Sequence[str]) -> None:
        """Remember (in memory) that `caller` was shown `names`, best first, for `query`."""
        if not names:
            return
        state = self._state(caller, create=True)
        assert state is not None
        ranks = {name: rank for rank, name in enumerate(names, start=1)}
        state.answers.append(_Answer(query_key(query), ranks, self._clock()))

    def called(self, caller: Caller, name: str) -> bool:
        """`caller` called `name`: learn the pair if a recent answer to this caller showed it (True when learned)."""
        state = self._state(caller, create=False)
        if state is None:
            return False
        now = self._clock()
        for answer in reversed(state.answers):
            if now - answer.time > self.bounds.answer_seconds or name in answer.used or name not in answer.ranks:
                continue
            answer.used.add(name)
            return self._learn(state, answer.query, name, answer.ranks[name], now)
        return False

    def boosts(self, query: str) -> dict[str, float]:
        """The bonus each tool gets for `query` (only tools with a learned pair; each at most `max_boost`)."""
        pairs = self._queries.get(query_key(query))
        if not pairs:
            return {}
        now, bounds = self._clock(), self.bounds
        boosts = {}
        for name, pair in pairs.items():
            weight = min(self._decayed(pair, now), bounds.full_weight)
            if weight >= bounds.floor:
                boosts[name] = bounds.max_boost * weight / bounds.full_weight
        return boosts

    def depth(self, query: str, top_k: int) -> int:
        """How many hits to fetch so every learned tool of `query` can take part: the deepest rank it was called at."""
        pairs = self._queries.get(query_key(query))
        deepest = max((pair.rank for pair in pairs.values()), default=0) if pairs else 0
        return max(top_k, min(deepest, MAX_DEPTH))

    def rerank(
        self, query: str, hits: Sequence[SearchHit], top_k: int, allowed: Collection[str]
    ) -> tuple[SearchHit, ...]:
        """`hits` (already restricted to the caller's tools) reordered by score plus bonus, cut to `top_k`.

        Only hits in `allowed` are kept: the prior reorders, it never adds a tool.
        """
        boosts = self.boosts(query)
        kept = [hit for hit in hits if hit.name in allowed]
        if not boosts:
            return tuple(kept[:top_k])
        scored = [(hit.score + boosts.get(hit.name, 0.0), position, hit) for position, hit in enumerate(kept)]
        scored.sort(key=lambda item: (-item[0], item[1]))
        return tuple(replace(hit, score=round(score, 6)) for score, _, hit in scored[:top_k])

    def records(self) -> list[dict[str, Any]]:
        """The pairs still worth keeping, as the file stores them (a copy: safe to write from a thread)."""
        now = self._clock()
        return [
            {"query": query, "tool": name, "weight": round(pair.weight, 4), "updated": pair.updated, "rank": pair.rank}
            for query, pairs in self._queries.items()
            for name, pair in pairs.items()
            if self._decayed(pair, now) >= self.bounds.floor
        ]

    def save(self, records: list[dict[str, Any]] | None = None) -> None:
        """Write the pairs to `path` atomically (blocking: call it from a worker thread)."""
        if self.path is None:
            return
        self.dirty = False
        document = {"version": VERSION, "pairs": self.records() if records is None else records}
        write_atomically(self.path, json.dumps(document, separators=(",", ":")))

    def _state(self, caller: Caller, *, create: bool) -> _CallerState | None:
        key = hmac.digest(self._secret, "\x00".join(caller).encode(), "sha256")
        state = self._callers.get(key)
        if state is not None:
            self._callers.move_to_end(key)
        elif create:
            state = self._callers[key] = _CallerState(deque(maxlen=self.bounds.answers_per_caller))
            while len(self._callers) > self.bounds.callers:
                self._callers.popitem(last=False)
        return state

    def _learn(self, state: _CallerState, query: str, name: str, rank: int, now: float) -> bool:
        bounds = self.bounds
        if now - state.window_start >= bounds.window:
            state.window_start, state.contributed = now, set()
        if (query, name) in state.contributed or len(state.contributed) >= bounds.pairs_per_window:
            return False
        state.contributed.add((query, name))
        pairs = self._queries.setdefault(query, {})
        pair = pairs.get(name)
        weight = self._decayed(pair, now) if pair is not None else 0.0
        if pair is None:
            self._size += 1
        pairs[name] = Pair(min(weight + 1.0, bounds.full_weight), now, rank)
        if len(pairs) > bounds.tools_per_query:
            self._drop(query, min(pairs, key=lambda tool: self._decayed(pairs[tool], now)))
        if self._size > bounds.pairs:
            self._forget(now)
        self.dirty = True
        return True

    def _decayed(self, pair: Pair, now: float) -> float:
        age = max(now - pair.updated, 0.0)
        return pair.weight * math.exp2(-age / self.bounds.half_life)

    def _drop(self, query: str, name: str) -> None:
        pairs = self._queries[query]
        del pairs[name]
        self._size -= 1
        if not pairs:
            del self._queries[query]

    def _forget(self, now: float) -> None:
        """Keep the heaviest nine tenths of `Bounds.pairs`, by decayed weight."""
        ranked = sorted(
            (
                (self._decayed(pair, now), query, name)
                for query, pairs in self._queries.items()
                for name, pair in pairs.items()
            ),
        )
        for _, query, name in ranked[: self._size - self.bounds.pairs * 9 // 10]:
            self._drop(query, name)

    def _restore(self, document: Any) -> None:
        if not isinstance(document, dict) or document.get("version") != VERSION:
            raise ValueError(f"expected an object with version {VERSION}")
        now, bounds = self._clock(), self.bounds
        for record in document["pairs"]:
            query, name = record["query"], record["tool"]
            weight, updated, rank = float(record["weight"]), float(record["updated"]), int(record["rank"])
            if not (isinstance(query, str) and re.fullmatch(r"[0-9a-f]{32}", query)):
                raise ValueError("a pair's query is not a query hash")
            if not (isinstance(name, str) and 0 < len(name) <= 256):
                raise ValueError("a pair's tool is not a tool name")
            if not (math.isfinite(weight) and math.isfinite(updated) and weight > 0 and 0 < rank <= 1000):
                raise ValueError(f"the pair of tool '{name}' has an impossible weight, time or rank")
            pair = Pair(min(weight, bounds.full_weight), min(updated, now), rank)
            if self._decayed(pair, now) >= bounds.floor and len(self._queries.get(query, ())) < bounds.tools_per_query:
                self._size += name not in self._queries.setdefault(query, {})
                self._queries[query][name] = pair
        if self._size > bounds.pairs:
            self._forget(now)
