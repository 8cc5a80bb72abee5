"""The tool index behind `intelligent_tool_finder`: sync the catalog in, search it per caller.

    async with ToolIndex(uri, Embedder()) as index:       # loads the model in the background
        report = await index.sync(documents)               # by content hash; no full rebuild
        result = await index.search("weather in Paris", allowed=names_the_caller_may_call)

A sync stores documents at once, so full-text search finds new tools immediately; their vectors
are computed when the model is there (at once if it is loaded, else by the background task that
loads it). Until the model is loaded, searches rank by full-text alone and say so. Vectors are
kept by content, so unchanged tools are never re-embedded, also after a restart.

A search is restricted to the caller's allowed tools (and the optional server and tag filters)
before anything is ranked: the dense half scores only eligible rows, the full-text half asks
LanceDB only for eligible names. A forbidden tool is never returned, however it is named.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.to_thread

from aggregator.search.documents import ToolDocument
from aggregator.search.embedder import Embedder, Vectors
from aggregator.search.errors import DuplicateToolError, EmbedderUnavailableError, IndexClosedError
from aggregator.search.query import plan_query
from aggregator.search.ranking import Evidence, Ranking, full_text_scores, ranked_rows, view_scores
from aggregator.search.results import SearchHit, SearchMode, SearchResult, SyncReport
from aggregator.search.snapshot import EMPTY, Snapshot, build_snapshot, used_keys
from aggregator.search.store import ToolStore

logger = logging.getLogger(__name__)

EMBED_CHUNK = 64
PUBLISH_EVERY = 2048


class ToolIndex:
    """A LanceDB-backed index of exported tools; use as `async with`, or `open()`/`aclose()` in one task."""

    def __init__(
        self,
        uri: str | Path,
        embedder: Embedder,
        *,
        ranking: Ranking | None = None,
        load_model: bool = True,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        self.uri = str(uri)
        self.ranking = ranking or Ranking()
        self._embedder = embedder
        self._load_model = load_model
        self._storage_options = storage_options
        self._store: ToolStore | None = None
        self._snapshot = EMPTY
        self._vectors: dict[str, Vectors] = {}
        self._stack: AsyncExitStack | None = None
        self._write_lock = anyio.Lock()
        self._embedded = anyio.Event()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Connect, read what earlier runs stored, and start the background task that embeds once the model is ready."""
        async with AsyncExitStack() as stack:
            store = await ToolStore.open(self.uri, self._storage_options)
            stack.callback(store.close)
            documents, hashes = await store.read_documents()
            self._vectors = await store.read_vectors()
            await self._publish(documents, hashes)
            background = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(background.cancel_scope.cancel)  # runs first on close: stop the task, then the group
            self._store = store
            background.start_soon(self._embed_when_ready)
            logger.info("search.index_opened", extra={"uri": self.uri, "tools": len(documents)})
            self._stack = stack.pop_all()

    async def aclose(self) -> None:
        """Stop the background task and close the database connection."""
        stack, self._stack = self._stack, None
        self._store = None
        if stack is not None:
            await stack.aclose()  # cancels the background task, then closes the store: nothing waits on I/O

    @property
    def size(self) -> int:
        """How many tools the index holds."""
        return len(self._snapshot.names)

    @property
    def snapshot(self) -> Snapshot:
        """The matrices the current searches read (for benchmarks and diagnostics; immutable)."""
        return self._snapshot

    @property
    def names(self) -> tuple[str, ...]:
        """The indexed tools' names in row order: `Evidence.rows` index into it."""
        return self._snapshot.names

    @property
    def pending(self) -> int:
        """How many texts still wait for the model (0 once everything is embedded)."""
        return self._snapshot.pending

    async def wait_embedded(self) -> None:
        """Wait until the model is loaded and every stored tool has its vector."""
        await self._embedded.wait()

    async def sync(self, documents: Iterable[ToolDocument]) -> SyncReport:
        """Make the index hold exactly `documents`: add new, replace changed, delete removed; embed what is new.

        Unchanged documents (same content hash) are not rewritten and never re-embedded.
        Raises `DuplicateToolError` if two documents share a name.
        """
        store = self._require_open()
        started = time.perf_counter()
        incoming: dict[str, ToolDocument] = {}
        for document in documents:
            if document.name in incoming:
                raise DuplicateToolError(document.name)
            incoming[document.name] = document
        async with self._write_lock:
            current = self._snapshot
            hashes = await anyio.to_thread.run_sync(_content_hashes, incoming, self._embedder.model_id)
            added = [name for name in incoming if name not in current.hashes]
            updated = [name for name in incoming if name in current.hashes and current.hashes[name] != hashes[name]]
            removed = set(current.documents) - set(incoming)
            if added or updated or removed:
                await store.replace_documents(
                    removed | set(updated), [(incoming[n], hashes[n]) for n in added + updated]
                )
                await self._publish(incoming, hashes)
            embedded = await self._embed_missing() if self._embedder.ready else 0
            if added or updated or removed:
                await self._forget_unused_vectors()
        report = SyncReport(
            added=len(added),
            updated=len(updated),
            removed=len(removed),
            unchanged=len(incoming) - len(added) - len(updated),
            embedded=embedded,
            pending=self._snapshot.pending,
            seconds=round(time.perf_counter() - started, 3),
        )
        if report.changed or embedded:
            logger.info("search.synced", extra={"uri": self.uri, **_fields(report)})
        return report

    async def search(
        self,
        query: str,
        *,
        allowed: Collection[str],
        top_k: int = 5,
        servers: Collection[str] | None = None,
        tags: Collection[str] | None = None,
        method: SearchMode = "hybrid",
    ) -> SearchResult:
        """The `top_k` tools that best match `query` among those in `allowed` (and `servers`/`tags`, if given).

        `method` is for diagnostics and benchmarks: "vector" or "full-text" ranks by one half only.
        A "hybrid" search falls back to "full-text" while the model is not loaded, and says so in `note`.
        """
        snapshot = self._snapshot
        mode, note = self._mode(method, snapshot)
        if top_k <= 0:
            return SearchResult((), mode, note)
        evidence = await self.evidence(query, allowed=allowed, servers=servers, tags=tags, mode=mode, top_k=top_k)
        rows = evidence.rows
        if rows.size == 0:
            return SearchResult((), mode, note)
        ranked = ranked_rows(snapshot, evidence, query, self.ranking, top_k)
        hits = tuple(_hit(snapshot.documents[snapshot.names[row]], score) for row, score in ranked)
        return SearchResult(tuple(hit for hit in hits if hit.name in allowed), mode, note)

    async def evidence(
        self,
        query: str,
        *,
        allowed: Collection[str],
        servers: Collection[str] | None = None,
        tags: Collection[str] | None = None,
        mode: SearchMode = "hybrid",
        top_k: int = 0,
    ) -> Evidence:
        """What every eligible tool scored for `query`, before fusion (for `search`, and for benchmarks).

        `mode` says which halves run: "hybrid" both, "vector" or "full-text" one. The halves run
        concurrently: the query encodes while LanceDB searches.
        """
        store = self._require_open()
        snapshot = self._snapshot
        rows = snapshot.eligible_rows(allowed, servers, tags)
        ranking = self.ranking
        plan = plan_query(
            query, split_steps=ranking.split_steps, whole_words=ranking.whole_query_words, max_steps=ranking.max_steps
        )
        if rows.size == 0 or not plan.text:
            return Evidence(rows[:0], None, None, None)
        dense = server = full_text = None

        async def rank_dense() -> None:
            nonlocal dense, server
            vectors = await self._embedder.encode_queries(plan.texts)
            dense, server = await anyio.to_thread.run_sync(view_scores, snapshot, rows, vectors)

        async def rank_full_text() -> None:
            nonlocal full_text
            names = None if rows.size == len(snapshot.names) else frozenset(snapshot.names[row] for row in rows)
            limit = max(self.ranking.full_text_candidates, top_k)
            hits = await store.full_text(plan.text, names, len(snapshot.names), limit)
            full_text = full_text_scores(snapshot, rows, hits)

        async with anyio.create_task_group() as group:
            if mode != "full-text":
                group.start_soon(rank_dense)
            if mode != "vector":
                group.start_soon(rank_full_text)
        return Evidence(rows, dense, server, full_text)

    def _mode(self, method: SearchMode, snapshot: Snapshot) -> tuple[SearchMode, str | None]:
        if method == "full-text":
            return "full-text", None
        if not self._embedder.ready:
            if method == "vector":
                raise EmbedderUnavailableError(self._embedder.model_id, self._embedder.failure or "not loaded yet")
            state = "is unavailable" if self._embedder.failure else "is still loading"
            return "full-text", f"The semantic search model {state}; these results come from keyword search alone."
        if snapshot.pending:
            return method, (
                f"{snapshot.pending} new tool or server descriptions are still being embedded; "
                "until then they are matched by keywords only."
            )
        return method, None

    def _require_open(self) -> ToolStore:
        if self._store is None:
            raise IndexClosedError(self.uri)
        return self._store

    async def _publish(self, documents: dict[str, ToolDocument], hashes: dict[str, str]) -> None:
        """Swap in a snapshot of `documents` with the vectors known now; signal when nothing is pending.

        Building it hashes and copies every view (a fraction of a second at 10,000 tools): a worker thread's job.
        """
        dimension = self._embedder.dimension or next((v.shape[0] for v in self._vectors.values()), None)
        model = self._embedder.model_id
        self._snapshot = await anyio.to_thread.run_sync(
            build_snapshot, documents, hashes, dict(self._vectors), model, dimension
        )
        if self._embedder.ready and not self._snapshot.pending:
            self._embedded.set()
        elif self._embedded.is_set():
            self._embedded = anyio.Event()

    async def _embed_missing(self) -> int:
        """Embed every text the current snapshot lacks, in chunks (a query waits for one chunk at most).

        The snapshot is republished every `PUBLISH_EVERY` texts, so semantic search improves while a
        large catalog is embedded rather than only at the end.
        """
        store = self._require_open()
        documents, hashes = dict(self._snapshot.documents), dict(self._snapshot.hashes)
        if self._snapshot.view_vectors.shape[1] != self._embedder.dimension:  # first sight of this model's vectors
            width = self._embedder.dimension
            self._vectors = {key: vector for key, vector in self._vectors.items() if vector.shape[0] == width}
            await self._publish(documents, hashes)
        # Similar lengths share a batch: the model pads every text of a batch to its longest one.
        missing = sorted(self._snapshot.missing_texts.items(), key=lambda item: len(item[1]))
        for start in range(0, len(missing), EMBED_CHUNK):
            chunk = missing[start : start + EMBED_CHUNK]
            vectors = await self._embedder.encode_documents([text for _, text in chunk])
            await store.add_vectors([key for key, _ in chunk], vectors)
            self._vectors.update(zip((key for key, _ in chunk), vectors, strict=True))
            if (start // EMBED_CHUNK + 1) % (PUBLISH_EVERY // EMBED_CHUNK) == 0:
                await self._publish(documents, hashes)
        if missing or not self._embedded.is_set():
            await self._publish(documents, hashes)
        return len(missing)

    async def _forget_unused_vectors(self) -> None:
        documents = list(self._snapshot.documents.values())
        used = await anyio.to_thread.run_sync(used_keys, documents, self._embedder.model_id)
        unused = self._vectors.keys() - used
        if unused:
            await self._require_open().delete_vectors(unused)
            for key in unused:
                del self._vectors[key]

    async def _embed_when_ready(self) -> None:
        """Background task: load the model (or wait for whoever does), then embed what syncs stored meanwhile."""
        try:
            await (self._embedder.load() if self._load_model else self._embedder.wait_ready())
            async with self._write_lock:
                if self._store is not None:
                    await self._embed_missing()
        except EmbedderUnavailableError:
            return  # logged by the embedder; searches keep answering from full-text and say why
        except Exception:  # a background task's top level: log, keep serving full-text, retry at the next sync
            logger.exception("search.embed_failed", extra={"uri": self.uri})


def _content_hashes(documents: dict[str, ToolDocument], model: str) -> dict[str, str]:
    return {name: document.content_hash(model) for name, document in documents.items()}


def _hit(document: ToolDocument, score: float) -> SearchHit:
    return SearchHit(document.name, document.server, document.description, document.input_schema, round(score, 6))


def _fields(report: SyncReport) -> dict[str, object]:
    return {field: getattr(report, field) for field in report.__slots__}
