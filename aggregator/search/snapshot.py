"""An immutable in-memory view of the index: documents, their vectors as matrices, and who may see what.

The vectors live in LanceDB (persisted, shared by replicas) and are mirrored here as matrices,
because the dense half of a search must be restricted to an arbitrary set of allowed tools before
it is cut to top_k. In LanceDB 0.40 a `name IN (...)` prefilter of 5,000 names costs 40-115 ms at
10,000 rows; scoring every view in memory and keeping the eligible ones costs a few milliseconds
and is exact. A sync builds a new snapshot and swaps it in, so a search never sees half a sync.

Each tool has several views (`ToolDocument.views`), stored contiguously: tool row `r` owns view
rows `view_start[r]:view_start[r + 1]`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from aggregator.search.documents import ToolDocument, text_hash
from aggregator.search.embedder import Vectors

Rows = npt.NDArray[np.intp]
Flags = npt.NDArray[np.bool_]

ELIGIBLE_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a search reads, consistent with one sync; tool rows follow `names` (sorted)."""

    documents: Mapping[str, ToolDocument]
    hashes: Mapping[str, str]
    names: tuple[str, ...]
    rows: Mapping[str, int]
    view_vectors: Vectors
    view_embedded: Flags
    view_start: Rows
    tool_server: Rows
    servers: tuple[str, ...]
    server_vectors: Vectors
    server_embedded: Flags
    missing_texts: Mapping[str, str]
    eligible_cache: dict[object, Rows] = field(default_factory=dict, compare=False, repr=False)

    @property
    def pending(self) -> int:
        """How many texts (tool views and servers) still wait for the model."""
        return len(self.missing_texts)

    def eligible_rows(
        self,
        allowed: Collection[str],
        servers: Collection[str] | None = None,
        tags: Collection[str] | None = None,
    ) -> Rows:
        """Rows of the tools a caller may see that also pass the optional server and tag filters, ascending.

        Callers that pass the same frozenset again (a principal's permissions) get the cached answer.
        """
        key = None
        if isinstance(allowed, frozenset):
            key = (allowed, None if servers is None else frozenset(servers), None if tags is None else frozenset(tags))
            if (cached := self.eligible_cache.get(key)) is not None:
                return cached
        found = [row for row in map(self.rows.get, allowed) if row is not None]
        if servers is not None or tags is not None:
            wanted_servers = None if servers is None else frozenset(servers)
            wanted_tags = None if tags is None else frozenset(tags)
            found = [
                row
                for row in found
                if (wanted_servers is None or self.documents[self.names[row]].server in wanted_servers)
                and (wanted_tags is None or not wanted_tags.isdisjoint(self.documents[self.names[row]].tags))
            ]
        rows = np.unique(np.asarray(found, dtype=np.intp))
        if key is not None:
            if len(self.eligible_cache) >= ELIGIBLE_CACHE_SIZE:
                self.eligible_cache.clear()
            self.eligible_cache[key] = rows
        return rows


def build_snapshot(
    documents: Mapping[str, ToolDocument],
    hashes: Mapping[str, str],
    vectors: Mapping[str, Vectors],
    model: str,
    dimension: int | None,
) -> Snapshot:
    """Assemble the matrices from the stored vectors (keyed by `text_hash`); note what is still missing."""
    names = tuple(sorted(documents))
    servers = tuple(sorted({document.server for document in documents.values()}))
    server_row = {server: row for row, server in enumerate(servers)}
    server_texts: dict[str, str] = {}
    for document in documents.values():
        server_texts.setdefault(document.server, document.server_text())
    views = [documents[name].views() for name in names]
    missing: dict[str, str] = {}

    def matrix(texts: list[str]) -> tuple[Vectors, Flags]:
        width = dimension or 0
        result = np.zeros((len(texts), width), dtype=np.float32)
        present = np.zeros(len(texts), dtype=np.bool_)
        for row, text in enumerate(texts):
            key = text_hash(model, text)
            vector = vectors.get(key)
            if vector is not None and width and vector.shape[0] == width:
                result[row] = vector
                present[row] = True
            else:
                missing[key] = text
        return result, present

    view_vectors, view_embedded = matrix([text for texts in views for text in texts])
    server_vectors, server_embedded = matrix([server_texts[server] for server in servers])
    view_start = np.zeros(len(names) + 1, dtype=np.intp)
    np.cumsum([len(texts) for texts in views], out=view_start[1:])
    return Snapshot(
        documents=dict(documents),
        hashes=dict(hashes),
        names=names,
        rows={name: row for row, name in enumerate(names)},
        view_vectors=view_vectors,
        view_embedded=view_embedded,
        view_start=view_start,
        tool_server=np.asarray([server_row[documents[name].server] for name in names], dtype=np.intp),
        servers=servers,
        server_vectors=server_vectors,
        server_embedded=server_embedded,
        missing_texts=missing,
    )


def used_keys(documents: Collection[ToolDocument], model: str) -> set[str]:
    """The keys of every vector the documents need: their views and their servers'."""
    keys = {text_hash(model, text) for document in documents for text in document.views()}
    keys |= {text_hash(model, document.server_text()) for document in documents}
    return keys


EMPTY = build_snapshot({}, {}, {}, "", None)
