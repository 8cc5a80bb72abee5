"""How fast `intelligent_tool_finder` is: index build, re-sync after a restart, query latency, memory.

Run from the repository root::

    python bench/finder_speed.py                 # 1,000 and 10,000 tools, ~4-5 minutes on 2 cores
    python bench/finder_speed.py --sizes 1000    # ~30 s

For each catalog size the benchmark generates synthetic tools (20 per server, 1-3 sentence
descriptions, 1-4 described parameters; seeded, so every run indexes the same texts) and, through
the real `ToolIndex` and `Embedder`:

1. builds a fresh LanceDB index (`sync` of every tool, embeddings included): tools/s;
2. closes it and opens a new `ToolIndex` on the same directory, then syncs the same catalog
   ("restart, nothing changed"): seconds for open + sync, and texts re-embedded (target 0, < 2 s);
3. runs `--queries` distinct short queries (3-8 words, as an agent asks the finder) after a
   warm-up, with every tool allowed, with half of them allowed (the full-text half over-fetches
   and filters) and with 100 allowed (a LanceDB prefilter): p50 and p99 (target p50 <= 20 ms at
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
from dataclasses import dataclass
from pathlib import Path

import anyio

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from aggregator.search import Embedder, ToolDocument, ToolIndex  # noqa: E402
from bench._checks import print_checks  # noqa: E402

TOOLS_PER_SERVER = 20
RESYNC_TARGET_S = 2.0
P50_TARGET_MS = 20.0

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
    index: ToolIndex, queries: list[str], allowed: frozenset[str], warmup: int
) -> tuple[float, float]:
    for query in queries[:warmup]:
        await index.search(query, allowed=allowed)
    samples = []
    for query in queries[warmup:]:
        started = time.perf_counter()
        result = await index.search(query, allowed=allowed)
        samples.append((time.perf_counter() - started) * 1000)
        assert result.mode == "hybrid" and all(hit.name in allowed for hit in result.hits)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


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
        result.latency_ms = {label: await time_queries(index, queries, ok, 20) for label, ok in callers.items()}
    result.rss_mib = resident_mib()
    return result


async def run(arguments: argparse.Namespace) -> int:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)
    embedder = Embedder()
    started = time.perf_counter()
    await embedder.load()
    load_s = time.perf_counter() - started
    results = []
    with tempfile.TemporaryDirectory(prefix="finder-speed-") as scratch:
        for size in arguments.sizes:
            results.append(await measure(size, embedder, Path(scratch) / f"tools-{size}", arguments.queries))
    print(f"Model load (import + weights): {load_s:.1f} s; load average at the end: {os.getloadavg()[0]:.1f}\n")
    print(
        "| tools | build s | tools/s | texts embedded | restart + re-sync s | re-embedded | query p50 / p99 ms: "
        "all allowed | half allowed | 100 allowed | RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    checks = []
    for r in results:
        assert r.latency_ms is not None
        latency = " | ".join(f"{p50:.1f} / {p99:.1f}" for p50, p99 in r.latency_ms.values())
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
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--queries", type=int, default=200, help="timed queries per caller (after 20 warm-up)")
    arguments = parser.parse_args()
    sys.exit(anyio.run(run, arguments))


if __name__ == "__main__":
    main()
