"""What the index answers: search hits with the search mode, and what a sync did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SearchMode = Literal["hybrid", "vector", "full-text"]


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One tool found for a query; `score` only orders hits of the same search."""

    name: str
    server: str
    description: str
    input_schema: dict[str, Any]
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The hits of one search, best first.

    `mode` says how they were ranked: "hybrid" normally, "full-text" while the embedding model is
    not available, in which case `note` says so in a sentence a caller can show.
    """

    hits: tuple[SearchHit, ...]
    mode: SearchMode
    note: str | None = None


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one `ToolIndex.sync` changed; `embedded` counts texts sent to the model (tools and servers)."""

    added: int
    updated: int
    removed: int
    unchanged: int
    embedded: int
    pending: int
    seconds: float

    @property
    def changed(self) -> bool:
        """Whether the catalog differed from what the index held."""
        return bool(self.added or self.updated or self.removed)
