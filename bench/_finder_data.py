"""The finder benchmark's catalogs and tasks, and indexes seeded from an on-disk vector cache.

Embedding ~3.3k tools takes minutes on 2 cores, and the vectors are deterministic: they are cached
in `<cache>/vectors.npz` by `text_hash(model, text)` and written into each fresh LanceDB directory
before the index opens, so only texts never seen before are embedded.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aggregator.search import Embedder, ToolDocument, ToolIndex
from aggregator.search.snapshot import used_keys
from aggregator.search.store import ToolStore
from bench._crossval import task_metrics


@dataclass(frozen=True, slots=True)
class Task:
    query: str
    gold: frozenset[str]

    @property
    def servers(self) -> list[str]:
        """The gold tools' servers, the one with most gold tools first (ties by name)."""
        counts: dict[str, int] = {}
        for name in self.gold:
            server = name.split("__", 1)[0]
            counts[server] = counts.get(server, 0) + 1
        return sorted(counts, key=lambda server: (-counts[server], server))

    def metrics(self, ranked: Sequence[int], rows: Mapping[str, int]) -> list[float]:
        return task_metrics(ranked, frozenset(rows[name] for name in self.gold if name in rows))


@dataclass(frozen=True, slots=True)
class Catalog:
    label: str
    documents: list[ToolDocument]
    tasks: list[Task]
    report_only: bool = False


def exported(server: str, tool: str) -> str:
    return f"{server}__{tool}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def document(record: dict[str, Any], describe: Callable[[str], str] = str) -> ToolDocument:
    """The document of one tool record; `describe` rewrites its description (to measure a text recipe)."""
    return ToolDocument(
        name=exported(record["server"], record["tool"]),
        server=record["server"],
        title=None,
        description=describe(record.get("description") or ""),
        input_schema=record.get("input_schema") or {},
        server_description=record.get("server_description") or "",
    )


def unique(documents: Iterable[ToolDocument]) -> list[ToolDocument]:
    seen: dict[str, ToolDocument] = {}
    for item in documents:
        seen.setdefault(item.name, item)
    return list(seen.values())


def tasks_of(path: Path) -> list[Task]:
    return [
        Task(record["query"], frozenset(exported(*gold.split("/", 1)) for gold in record["gold"]))
        for record in read_jsonl(path)
        if record["gold"]
    ]


def load_catalogs(
    data: Path, own_prompts: Path, siblings: Path | None = None, describe: Callable[[str], str] = str, suffix: str = ""
) -> list[Catalog]:
    """dev, dev + MCP-Zero distractors, and the own set over MCP-Zero with LiveMCPBench as distractors.

    With `siblings`, also the sibling set over that same catalog. `describe` rewrites every tool's
    description and `suffix` marks the labels of catalogs built so.
    """
    dev_tools = read_jsonl(data / "livemcpbench" / "tools.jsonl")
    pool = read_jsonl(data / "mcpzero_tools" / "tools.jsonl")
    dev_tasks = tasks_of(data / "livemcpbench" / "queries.jsonl")
    gold_tools = {name.split("__", 1)[1] for task in dev_tasks for name in task.gold}
    dev_servers = {record["server"] for record in dev_tools}
    distractors = [r for r in pool if r["tool"] not in gold_tools and r["server"] not in dev_servers]
    base = unique(document(record, describe) for record in dev_tools)
    with_distractors = unique([*base, *(document(record, describe) for record in distractors)])
    own_catalog = unique([*(document(record, describe) for record in pool), *base])
    own_tasks = tasks_of(own_prompts)
    sibling_tasks = tasks_of(siblings) if siblings is not None else []
    names = {d.name for d in own_catalog}
    missing = [name for task in own_tasks + sibling_tasks for name in task.gold if name not in names]
    if missing:
        raise SystemExit(f"gold tools missing from the MCP-Zero pool: {missing}")
    catalogs = [
        Catalog("dev" + suffix, base, dev_tasks),
        Catalog("dev+distractors" + suffix, with_distractors, dev_tasks),
        Catalog("own+distractors" + suffix, own_catalog, own_tasks, report_only=True),
    ]
    if siblings is not None:
        catalogs.append(Catalog("siblings+distractors" + suffix, own_catalog, sibling_tasks, report_only=True))
    return catalogs


@asynccontextmanager
async def seeded_index(directory: Path, catalog: Catalog, embedder: Embedder, cache: Path) -> AsyncIterator[ToolIndex]:
    """An index of `catalog` in `directory`, its vectors read from `cache` first and new ones saved back."""
    cached = _read_cache(cache / "vectors.npz")
    needed = used_keys(catalog.documents, embedder.model_id)
    known = sorted(needed & cached.keys())
    store = await ToolStore.open(str(directory))
    try:
        if known:
            await store.add_vectors(known, np.stack([cached[key] for key in known]))
    finally:
        store.close()
    async with ToolIndex(directory, embedder) as index:
        await index.sync(catalog.documents)
        yield index
    if needed - cached.keys():
        store = await ToolStore.open(str(directory))
        try:
            cached.update(await store.read_vectors())
        finally:
            store.close()
        _write_cache(cache / "vectors.npz", cached)


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        return {}
    with np.load(path) as stored:
        return dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))


def _write_cache(path: Path, vectors: Mapping[str, np.ndarray]) -> None:
    keys = sorted(vectors)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, keys=np.asarray(keys), vectors=np.stack([vectors[key] for key in keys]))
    temporary.replace(path)
