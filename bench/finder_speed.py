"""How fast `intelligent_tool_finder` is: query latency at ~3k real tools, index build, re-sync, memory.

Run from the repository root::

    python bench/finder_speed.py                      # ~3.3k real tools: short and long queries, ~1 minute
    python bench/finder_speed.py --sizes 1000 10000   # also synthetic catalogs: build, re-sync, latency (~5 min)
    python bench/finder_speed.py --runtime torch      # the encoder before ONNX Runtime, for comparison
    python bench/finder_speed.py --no-real --documents 2048   # tool texts: torch against ONNX Runtime (~4 min)

The real catalog is LiveMCPBench plus the MCP-Zero pool (3,269 tools, the dev + distractors catalog
of `finder_quality.py`; vectors come from its cache, so only unseen texts are embedded). Short
queries are the 106 single-tool prompts of `bench/data/mcpzero_prompts.jsonl`; long queries are
the 94 LiveMCPBench tasks (multi-step, up to 90 words). Every query is timed once, after a warm-up
on other queries, so the query-embedding cache never answers a timed query: p50 and p95 of
`ToolIndex.search` with every tool allowed and with 100 allowed. Targets: p50 <= 25 ms and
p95 <= 60 ms for both kinds. The header names the encoder's runtime (ONNX Runtime unless it fell
back to torch); its exported graph is kept in `--cache/graphs`.

With `--documents N`: the first N tool texts (views) of the real catalog are encoded by both
runtimes, chunk by chunk as the index sends them (64 texts, every core), the two alternating: wall
and CPU seconds each, and the largest difference between their vectors.

With `--sizes`:

For each catalog size the benchmark generates synthetic tools (20 per server, 1-3 sentence
descriptions, 1-4 described parameters; seeded, so every run indexes the same texts) and, through
the real `ToolIndex` and `Embedder`:

1. builds a fresh LanceDB index (`sync` of every tool, embeddings included): tools/s;
2. closes it and opens a new `ToolIndex` on the same directory, then syncs the same catalog
   ("restart, nothing changed"): seconds for open + sync, and texts re-embedded (target 0, < 2 s);
3. runs `--queries` distinct short queries (3-8 words, as an agent asks the finder) after a
   warm-up, with every tool allowed, with half of them allowed (the full-text half over-fetches
   and filters) and with 100 allowed (a LanceDB prefilter): p50 and p95 (target p50 <= 20 ms at
   10,000 tools);
4. reads the process's resident memory (VmRSS) after each size.

Targets are printed as a checklist. Numbers depend on the machine's load: the header shows it.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import numpy as np
import numpy.typing as npt

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from aggregator.search import Embedder, ToolDocument, ToolIndex  # noqa: E402
from aggregator.search.embedder import Runtime  # noqa: E402
from bench._checks import print_checks  # noqa: E402
from bench._finder_data import load_catalogs, read_jsonl, seeded_index  # noqa: E402

TOOLS_PER_SERVER = 20
RESYNC_TARGET_S = 2.0
P50_TARGET_MS = 20.0
REAL_P50_TARGET_MS = 25.0
REAL_P95_TARGET_MS = 60.0
WARMUP = 10
CHUNK = 64  # the index's EMBED_CHUNK
RUNTIMES: list[Runtime] = ["torch", "onnxruntime"]

VERBS = ["get", "list", "create", "update", "delete", "search", "find", "fetch", "send", "read", "write"]
VERBS += ["convert", "analyze", "summarize", "schedule", "book"]
OBJECTS = [
    *("weather forecast", "stock price", "calendar event", "email message", "pull request", "issue", "file"),
    *("folder", "web page", "image", "video transcript", "map route", "train ticket", "hotel room", "invoice"),
    *("customer record", "database table", "spreadsheet row", "slide deck", "document paragraph", "crypto price"),
    *("news article", "research paper", "recipe", "playlist", "chess game", "container", "deployment", "metric"),
    *("log entry", "support ticket", "contact", "note", "reminder"),
]
QUALIFIERS = ["by id", "for a city", "in a date range", "with filters", "for the current user", "from a url"]
DETAILS = [
    "Returns the result as JSON.",
    "Supports pagination through a cursor.",
    "Requires an API key configured on the server.",
    "Results are sorted by relevance.",
    "Use this before calling the related update tool.",
    "Times are in UTC unless a timezone is given.",
]
PARAMETERS = ["query", "id", "city", "start_date", "end_date", "limit", "cursor", "url", "path", "format", "language"]


def synthetic_catalog(size: int, seed: int = 7) -> list[ToolDocument]:
    """`size` tools on `size / 20` servers; deterministic for a given seed."""
    rng = random.Random(seed)
    documents = []
    for number in range(size):
        server = f"server-{number // TOOLS_PER_SERVER:04d}"
        verb, thing, qualifier = rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(QUALIFIERS)
        details = " ".join(rng.sample(DETAILS, rng.randint(0, 2)))
        parameters = rng.sample(PARAMETERS, rng.randint(1, 4))
        documents.append(
            ToolDocument(
                name=f"{server}__{verb}_{thing.replace(' ', '_')}_{number}",
                server=server,
                title=None,
                description=f"{verb.capitalize()} a {thing} {qualifier}. {details}".strip(),
                input_schema={"type": "object", "properties": {p: described(p) for p in parameters}},
                server_description=f"Tools for {thing}s and related records ({server}).",
            )
        )
    return documents


def described(parameter: str) -> dict[str, str]:
    return {"type": "string", "description": f"The {parameter.replace('_', ' ')}."}


def synthetic_queries(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    queries: list[str] = []
    while len(queries) < count:
        query = f"{rng.choice(VERBS)} the {rng.choice(OBJECTS)} {rng.choice(QUALIFIERS)}"
        if query not in queries:
            queries.append(query)
    return queries


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Measurement:
    size: int
    build_s: float = 0.0
    texts_embedded: int = 0
    resync_s: float = 0.0
    resync_embedded: int = -1
    latency_ms: dict[str, tuple[float, float]] | None = None
    rss_mib: float = 0.0


async def time_queries(
    index: ToolIndex, embedder: Embedder, queries: list[str], allowed: frozenset[str], warmup: int
) -> tuple[float, float]:
    """p50 and p95 of the queries after the warm-up ones, each encoded afresh (the query cache is cleared)."""
    for query in queries[:warmup]:
        await index.search(query, allowed=allowed)
    embedder.clear_query_cache()
    samples = []
    for query in queries[warmup:]:
        started = time.perf_counter()
        result = await index.search(query, allowed=allowed)
        samples.append((time.perf_counter() - started) * 1000)
        assert result.mode == "hybrid" and all(hit.name in allowed for hit in result.hits)
    return percentiles(samples)


async def measure(size: int, embedder: Embedder, directory: Path, query_count: int) -> Measurement:
    documents = synthetic_catalog(size)
    names = [document.name for document in documents]
    result = Measurement(size)
    before = embedder.documents_encoded
    started = time.perf_counter()
    async with ToolIndex(directory, embedder) as index:
        report = await index.sync(documents)
    result.build_s = time.perf_counter() - started
    result.texts_embedded = embedder.documents_encoded - before
    print(f"{size} tools: built in {result.build_s:.1f} s ({report})", file=sys.stderr)

    before = embedder.documents_encoded
    started = time.perf_counter()
    async with ToolIndex(directory, embedder) as index:
        report = await index.sync(synthetic_catalog(size))
        result.resync_s = time.perf_counter() - started
        result.resync_embedded = embedder.documents_encoded - before
        print(f"{size} tools: restart + re-sync in {result.resync_s:.2f} s ({report})", file=sys.stderr)
        queries = synthetic_queries(query_count + 20)
        rng = random.Random(3)
        callers = {
            "all allowed": frozenset(names),
            "half allowed": frozenset(rng.sample(names, size // 2)),
            "100 allowed": frozenset(rng.sample(names, 100)),
        }
        result.latency_ms = {
            label: await time_queries(index, embedder, queries, ok, 20) for label, ok in callers.items()
        }
    result.rss_mib = resident_mib()
    return result


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def real_catalog(arguments: argparse.Namespace, embedder: Embedder) -> list[tuple[str, bool]]:
    """p50 / p95 of short and long queries over the ~3.3k-tool dev + distractors catalog."""
    catalog = load_catalogs(arguments.data, REPOSITORY / "bench" / "data" / "mcpzero_prompts.jsonl")[1]
    short = [record["query"] for record in read_jsonl(REPOSITORY / "bench" / "data" / "mcpzero_prompts.jsonl")]
    long = [task.query for task in catalog.tasks]
    checks = []
    with tempfile.TemporaryDirectory(prefix="finder-speed-") as scratch:
        async with seeded_index(Path(scratch) / "real", catalog, embedder, arguments.cache) as index:
            index.ranking = replace(index.ranking, whole_query_words=arguments.whole_query_words)
            names = [document.name for document in catalog.documents]
            callers = {"all allowed": frozenset(names), "100 allowed": frozenset(random.Random(3).sample(names, 100))}
            load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            print(f"\n{len(names):,} real tools; encoder on {embedder.runtime_in_use}; {load}\n")
            print(
                "CPU ms: the process's CPU time per search; it stays meaningful when other processes share the cores.\n"
            )
            print("| queries | words p50 / max | caller | p50 ms | p95 ms | max ms | CPU ms p50 / p95 |")
            print("|---|---|---|---|---|---|---|")
            for kind, queries in (("short", short), ("long", long)):
                words = sorted(len(query.split()) for query in queries)
                for caller, allowed in callers.items():
                    for query in queries[-WARMUP:] if caller == "all allowed" else []:
                        await index.search(query, allowed=allowed)
                    samples, cpu = [], []
                    for query in queries[:-WARMUP] if caller == "all allowed" else queries:
                        started, cpu_started = time.perf_counter(), time.process_time()
                        result = await index.search(query, allowed=allowed)
                        samples.append((time.perf_counter() - started) * 1000)
                        cpu.append((time.process_time() - cpu_started) * 1000)
                        assert result.mode == "hybrid" and all(hit.name in allowed for hit in result.hits)
                    p50, p95 = percentiles(samples)
                    cpu_p50, cpu_p95 = percentiles(cpu)
                    print(
                        f"| {kind} ({len(samples)}) | {statistics.median(words):.0f} / {words[-1]} | {caller} | "
                        f"{p50:.1f} | {p95:.1f} | {max(samples):.1f} | {cpu_p50:.1f} / {cpu_p95:.1f} |"
                    )
                    if caller == "all allowed":
                        checks.append(
                            (f"{kind} queries: p50 {p50:.1f} <= {REAL_P50_TARGET_MS:g} ms", p50 <= REAL_P50_TARGET_MS)
                        )
                        checks.append(
                            (f"{kind} queries: p95 {p95:.1f} <= {REAL_P95_TARGET_MS:g} ms", p95 <= REAL_P95_TARGET_MS)
                        )
                    embedder.clear_query_cache()  # the 100-allowed caller must encode its queries afresh
    return checks


async def compare_documents(arguments: argparse.Namespace, count: int) -> None:
    """Tool texts encoded by torch and by ONNX Runtime, alternating chunk by chunk: time and largest difference."""
    catalog = load_catalogs(arguments.data, REPOSITORY / "bench" / "data" / "mcpzero_prompts.jsonl")[1]
    texts = [view for document in catalog.documents for view in document.views()][:count]
    embedders = {runtime: Embedder(runtime=runtime, graph_cache=arguments.cache / "graphs") for runtime in RUNTIMES}
    for embedder in embedders.values():
        await embedder.load()
    seconds = {runtime: [0.0, 0.0] for runtime in embedders}
    vectors: dict[str, list[npt.NDArray[np.float32]]] = {runtime: [] for runtime in embedders}
    for number, start in enumerate(range(0, len(texts), CHUNK)):
        for runtime in RUNTIMES[number % 2 :] + RUNTIMES[: number % 2]:
            started, cpu_started = time.perf_counter(), time.process_time()
            vectors[runtime].append(await embedders[runtime].encode_documents(texts[start : start + CHUNK]))
            seconds[runtime][0] += time.perf_counter() - started
            seconds[runtime][1] += time.process_time() - cpu_started
    difference = float(np.max(np.abs(np.concatenate(vectors["torch"]) - np.concatenate(vectors["onnxruntime"]))))
    print(f"\n{len(texts):,} tool texts in chunks of {CHUNK}, {os.cpu_count()} threads; most apart: {difference:.1e}\n")
    print("| runtime | wall s | CPU s | texts/s |")
    print("|---|---|---|---|")
    for runtime, (wall, cpu) in seconds.items():
        print(f"| {runtime} | {wall:.1f} | {cpu:.1f} | {len(texts) / wall:.0f} |")


async def run(arguments: argparse.Namespace) -> int:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)
    embedder = Embedder(runtime=arguments.runtime, graph_cache=arguments.cache / "graphs")
    started = time.perf_counter()
    await embedder.load()
    load_s = time.perf_counter() - started
    real_checks = await real_catalog(arguments, embedder) if not arguments.no_real else []
    if arguments.documents:
        await compare_documents(arguments, arguments.documents)
    results = []
    with tempfile.TemporaryDirectory(prefix="finder-speed-") as scratch:
        for size in arguments.sizes:
            results.append(await measure(size, embedder, Path(scratch) / f"tools-{size}", arguments.queries))
    print(f"\nModel load (import + weights): {load_s:.1f} s; load average at the end: {os.getloadavg()[0]:.1f}\n")
    if not results:
        return print_checks(real_checks)
    print(
        "| tools | build s | tools/s | texts embedded | restart + re-sync s | re-embedded | query p50 / p95 ms: "
        "all allowed | half allowed | 100 allowed | RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    checks = list(real_checks)
    for r in results:
        assert r.latency_ms is not None
        latency = " | ".join(f"{p50:.1f} / {p95:.1f}" for p50, p95 in r.latency_ms.values())
        print(
            f"| {r.size:,} | {r.build_s:.1f} | {r.size / r.build_s:.0f} | {r.texts_embedded:,} | {r.resync_s:.2f} | "
            f"{r.resync_embedded} | {latency} | {r.rss_mib:.0f} |"
        )
        checks.append((f"{r.size:,} tools: zero re-embeds after restart", r.resync_embedded == 0))
        checks.append((f"{r.size:,} tools: restart + re-sync < {RESYNC_TARGET_S:g} s", r.resync_s < RESYNC_TARGET_S))
        if r.size >= 10_000:
            p50 = r.latency_ms["all allowed"][0]
            checks.append((f"{r.size:,} tools: query p50 <= {P50_TARGET_MS:g} ms", p50 <= P50_TARGET_MS))
    return print_checks(checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[], help="synthetic catalog sizes (none by default)")
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "finder-bench-cache")
    parser.add_argument("--no-real", action="store_true", help="skip the real ~3.3k-tool catalog")
    parser.add_argument(
        "--whole-query-words", type=int, help="encode long tasks as their steps only past this many words (Ranking)"
    )
    parser.add_argument("--runtime", choices=["onnxruntime", "torch"], default="onnxruntime", help="the encoder's")
    parser.add_argument("--documents", type=int, default=0, help="encode this many tool texts with both runtimes")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per caller (after 20 warm-up)")
    arguments = parser.parse_args()
    sys.exit(anyio.run(run, arguments))


if __name__ == "__main__":
    main()
