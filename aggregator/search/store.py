"""The LanceDB side of the index: two tables in one database at any URI (a directory, `s3://...`).

* `tools`: one row per exported tool (the document, its content hash and its full-text), with a
  native full-text index on `search_text`. Rows are replaced by name when their hash changes.
* `vectors`: one row per embedded text, keyed by `text_hash(model, text)`. Content-addressed, so a
  vector is computed once per text and model, survives restarts, and is shared by every tool
  (or server) with the same text. Created when the model first produces vectors, because only
  then is the dimension known; rebuilt if a model of another dimension is configured.

The async LanceDB API runs its I/O on its own runtime, so nothing here blocks the event loop.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from aggregator.search.documents import ToolDocument
from aggregator.search.embedder import Vectors

if TYPE_CHECKING:
    import lancedb

# LanceDB is imported where it is first used: its import (lance_namespace's generated clients) was more
# than half of `import aggregator.cli.serve`, paid by every gateway process whose finder is never asked.

logger = logging.getLogger(__name__)

# uvloop (uvicorn's event loop under `serve`) runs Python's after-fork hooks in every child it spawns,
# before exec (MagicStack/uvloop#749), so LanceDB's hook warns of a "chance of deadlock" in each stdio
# upstream's child. That child never uses LanceDB (it execs at once): the warning is noise, not a risk.
warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)

TOOLS = "tools"
VECTORS = "vectors"
SEARCH_COLUMN = "search_text"
# Above this many allowed names, a `name IN (...)` prefilter costs more than ranking more rows and dropping some.
PREFILTER_MAX_NAMES = 256
OVERFETCH = 1.5

_TOOLS_SCHEMA = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("server", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("description", pa.string(), nullable=False),
        pa.field("input_schema", pa.string(), nullable=False),
        pa.field("server_description", pa.string(), nullable=False),
        pa.field("tags", pa.list_(pa.string()), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field(SEARCH_COLUMN, pa.string(), nullable=False),
    ]
)
_DOCUMENT_COLUMNS = [field.name for field in _TOOLS_SCHEMA if field.name != SEARCH_COLUMN]


def _vectors_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dimension), nullable=False),
        ]
    )


class ToolStore:
    """Reads and writes the two tables; keeps no state beyond the open table handles."""

    def __init__(self, connection: lancedb.AsyncConnection) -> None:
        self._connection = connection
        self._tools: lancedb.AsyncTable | None = None
        self._vectors: lancedb.AsyncTable | None = None

    @classmethod
    async def open(cls, uri: str, storage_options: Mapping[str, str] | None = None) -> ToolStore:
        """Connect to the database at `uri` and open whichever tables already exist."""
        lancedb = await anyio.to_thread.run_sync(importlib.import_module, "lancedb")  # seconds, off the loop
        connection = await lancedb.connect_async(uri, storage_options=dict(storage_options or {}))
        store = cls(connection)
        existing = set((await connection.list_tables()).tables)
        if TOOLS in existing:
            store._tools = await connection.open_table(TOOLS)
        if VECTORS in existing:
            store._vectors = await connection.open_table(VECTORS)
        return store

    def close(self) -> None:
        """Release the table handles and the connection."""
        for table in (self._tools, self._vectors):
            if table is not None:
                table.close()  # type: ignore[no-untyped-call]
        self._tools = self._vectors = None
        self._connection.close()  # type: ignore[no-untyped-call]

    async def read_documents(self) -> tuple[dict[str, ToolDocument], dict[str, str]]:
        """Every stored document by name, and its content hash."""
        if self._tools is None:
            return {}, {}
        rows = (await self._tools.query().select(_DOCUMENT_COLUMNS).to_arrow()).to_pylist()
        documents: dict[str, ToolDocument] = {}
        hashes: dict[str, str] = {}
        for row in rows:
            documents[row["name"]] = ToolDocument(
                name=row["name"],
                server=row["server"],
                title=row["title"],
                description=row["description"],
                input_schema=json.loads(row["input_schema"]),
                server_description=row["server_description"],
                tags=tuple(row["tags"]),
            )
            hashes[row["name"]] = row["content_hash"]
        return documents, hashes

    async def read_vectors(self, dimension: int | None = None) -> dict[str, Vectors]:
        """Every stored vector by key (empty if the table holds vectors of another dimension)."""
        if self._vectors is None:
            return {}
        table = await self._vectors.query().select(["key", "vector"]).to_arrow()
        stored = table.schema.field("vector").type.list_size
        if table.num_rows == 0 or (dimension is not None and stored != dimension):
            return {}
        matrix = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, stored)
        matrix = matrix.astype(np.float32, copy=False)
        return dict(zip(table.column("key").to_pylist(), matrix, strict=True))

    async def replace_documents(self, remove: Collection[str], add: Sequence[tuple[ToolDocument, str]]) -> None:
        """Delete the rows named in `remove`, then add `(document, content_hash)` rows; fold them into the index."""
        from lancedb.expr import col
        from lancedb.index import FTS

        if remove and self._tools is not None:
            await self._tools.delete(col("name").isin(sorted(remove)))
        if add:
            batch = pa.Table.from_pylist([_row(document, digest) for document, digest in add], schema=_TOOLS_SCHEMA)
            if self._tools is None:
                self._tools = await self._connection.create_table(TOOLS, batch, exist_ok=True)
                await self._tools.create_index(SEARCH_COLUMN, config=FTS())
            else:
                await self._tools.add(batch)
        if (remove or add) and self._tools is not None:
            # New rows are searchable before this (LanceDB also scans unindexed rows); this keeps queries fast.
            await self._tools.optimize()

    async def add_vectors(self, keys: Sequence[str], vectors: Vectors) -> None:
        """Store vectors under their text keys, creating (or re-creating, on a new dimension) the table."""
        if not keys:
            return
        dimension = int(vectors.shape[1])
        if self._vectors is not None:
            stored = (await self._vectors.schema()).field("vector").type.list_size
            if stored != dimension:
                logger.warning("search.vectors_reset", extra={"stored_dimension": stored, "dimension": dimension})
                self._vectors.close()  # type: ignore[no-untyped-call]
                await self._connection.drop_table(VECTORS)
                self._vectors = None
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
        batch = pa.Table.from_arrays(
            [pa.array(list(keys), type=pa.string()), pa.FixedSizeListArray.from_arrays(flat, dimension)],
            schema=_vectors_schema(dimension),
        )
        if self._vectors is None:
            self._vectors = await self._connection.create_table(VECTORS, batch, exist_ok=True)
        else:
            await self._vectors.add(batch)

    async def delete_vectors(self, keys: Collection[str]) -> None:
        """Forget vectors no document or server uses any more."""
        from lancedb.expr import col

        if keys and self._vectors is not None:
            await self._vectors.delete(col("key").isin(sorted(keys)))

    async def full_text(self, query: str, eligible: Collection[str] | None, total: int, limit: int) -> dict[str, float]:
        """BM25 scores of the best `limit` eligible tools for `query` (`eligible=None`: every tool).

        The restriction applies before the cut to `limit`: a small eligible set is a prefilter;
        a large one ranks proportionally more rows and drops the others, and ranks every row if
        that was not enough. Either way no ineligible name is returned.
        """
        if self._tools is None or not query.strip() or limit <= 0:
            return {}
        if eligible is not None and len(eligible) <= PREFILTER_MAX_NAMES:
            return await self._match(query, limit, where=eligible)
        if eligible is None or len(eligible) >= total:
            return await self._match(query, limit)
        fetch = min(total, math.ceil(limit * total / max(len(eligible), 1) * OVERFETCH))
        allowed = eligible if isinstance(eligible, (set, frozenset)) else frozenset(eligible)
        hits = await self._match(query, fetch)
        found = {name: score for name, score in hits.items() if name in allowed}
        if len(found) < limit and len(hits) == fetch < total:
            hits = await self._match(query, total)
            found = {name: score for name, score in hits.items() if name in allowed}
        return dict(sorted(found.items(), key=lambda item: -item[1])[:limit])

    async def _match(self, query: str, limit: int, where: Iterable[str] | None = None) -> dict[str, float]:
        from lancedb.expr import col

        assert self._tools is not None
        search = self._tools.query().nearest_to_text(query, columns=SEARCH_COLUMN)  # words, never query syntax
        if where is not None:
            search = search.where(col("name").isin(list(where)))
        table = await search.select(["name", "_score"]).limit(limit).to_arrow()
        return dict(zip(table.column("name").to_pylist(), table.column("_score").to_pylist(), strict=True))


def _row(document: ToolDocument, digest: str) -> dict[str, Any]:
    return {
        "name": document.name,
        "server": document.server,
        "title": document.title,
        "description": document.description,
        "input_schema": json.dumps(document.input_schema, ensure_ascii=False, default=str),
        "server_description": document.server_description,
        "tags": list(document.tags),
        "content_hash": digest,
        SEARCH_COLUMN: document.search_text(),
    }
