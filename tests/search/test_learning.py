"""Learning from use: a tool called after a finder answer ranks higher for that query next time, within bounds.

The replay test runs real LiveMCPBench tasks (/work/shared/data, as bench/_finder_data.py reads it)
through a real index and the session's one MiniLM: simulated sessions ask, then call the gold tools
they were shown; afterwards a new caller's R@1 rises on the repeated tasks and does not fall on
unseen ones, against the same run's own baseline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from aggregator.config.settings import Settings
from aggregator.search import Embedder, SearchHit, ToolDocument, ToolIndex
from aggregator.search.learning import MAX_DEPTH, UsagePrior, learned_search, query_key
from tests.conftest import REPOSITORY
from tests.harness import Era, LiveGateway, call_structured, serve_gateway

pytestmark = pytest.mark.anyio
DATA = REPOSITORY.parent / "shared" / "data" / "livemcpbench"
CATALOG_TOOLS = 32
"""The replay's catalog: whole servers of the first dev tasks, up to this many tools (fast to embed)."""
SESSIONS = 3


class Clock:
    """Seconds since the epoch that a test moves by hand (no sleeps)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True, slots=True)
class Task:
    query: str
    gold: frozenset[str]


def hit(name: str, score: float) -> SearchHit:
    return SearchHit(name, name.split("__", 1)[0], "", {}, score)


# The prior on its own: bounds, permissions, persistence.


def test_a_call_after_an_answer_raises_that_tool_for_that_query_only() -> None:
    clock = Clock()
    prior = UsagePrior(clock=clock)
    prior.answered(("issuer", "alice"), "Weather in Lisbon?", ["weather__alerts", "weather__forecast"])
    assert prior.called(("issuer", "alice"), "weather__forecast")
    assert not prior.called(("issuer", "alice"), "weather__forecast"), "one answer teaches each tool once"
    assert not prior.called(("issuer", "bob"), "weather__alerts"), "bob was never answered"
    assert not prior.called(("issuer", "alice"), "mail__send"), "not in the answer"

    hits = [hit("weather__alerts", 0.80), hit("weather__forecast", 0.77)]  # one call is worth max_boost / 3
    assert [h.name for h in prior.rerank("weather in lisbon", hits, 2, {h.name for h in hits})] == [
        "weather__forecast",
        "weather__alerts",
    ]
    assert [h.name for h in prior.rerank("weather in Paris", hits, 2, {h.name for h in hits})] == [
        "weather__alerts",
        "weather__forecast",
    ]
    assert prior.depth("weather in lisbon", 1) == 2, "the search fetches as deep as the learned tool was found"
    assert prior.depth("weather in Paris", 1) == 1
    clock.now += prior.bounds.answer_seconds + 1
    prior.answered(("issuer", "carol"), "mail", ["mail__send"])
    clock.now += prior.bounds.answer_seconds + 1
    assert not prior.called(("issuer", "carol"), "mail__send"), "a call long after the answer teaches nothing"


def test_the_prior_never_adds_a_tool_the_caller_may_not_call() -> None:
    prior = UsagePrior(clock=Clock())
    for user in ("a", "b", "c"):
        prior.answered(("issuer", user), "deploy", ["admin__deploy", "ci__run"])
        prior.called(("issuer", user), "admin__deploy")
    assert prior.boosts("deploy")["admin__deploy"] == pytest.approx(prior.bounds.max_boost)
    allowed = {"ci__run", "ci__status"}
    offered = [hit("ci__run", 0.3), hit("ci__status", 0.2)]
    assert [h.name for h in prior.rerank("deploy", offered, 5, allowed)] == ["ci__run", "ci__status"]
    # Even if a hit the caller may not call slipped in, the prior does not pass it on.
    leaked = [hit("admin__deploy", 0.9), *offered]
    assert "admin__deploy" not in {h.name for h in prior.rerank("deploy", leaked, 5, allowed)}


def test_one_caller_moves_another_callers_ranking_by_at_most_the_bound() -> None:
    clock = Clock()
    prior = UsagePrior(clock=clock)
    bounds = prior.bounds
    attacker = ("issuer", "mallory")
    for _ in range(1_000):  # hammering one pair within one window counts once
        prior.answered(attacker, "pay the invoice", ["bank__pay", "evil__pay"])
        prior.called(attacker, "evil__pay")
    assert prior.boosts("pay the invoice") == {"evil__pay": pytest.approx(bounds.max_boost / bounds.full_weight)}
    for number in range(bounds.pairs_per_window * 3):  # many pairs in one window: only pairs_per_window count
        prior.answered(attacker, f"query number {number}", ["evil__pay"])
        prior.called(attacker, "evil__pay")
    assert len(prior) == bounds.pairs_per_window
    for _ in range(50):  # window after window, the pair's bonus saturates at max_boost
        clock.now += bounds.window
        prior.answered(attacker, "pay the invoice", ["bank__pay", "evil__pay"])
        prior.called(attacker, "evil__pay")
    assert prior.boosts("pay the invoice")["evil__pay"] == pytest.approx(bounds.max_boost, rel=1e-3)
    assert prior.boosts("pay the invoice")["evil__pay"] <= bounds.max_boost
    victim = [hit("bank__pay", 0.70), hit("evil__pay", 0.70 - bounds.max_boost - 0.01)]
    assert prior.rerank("pay the invoice", victim, 2, {"bank__pay", "evil__pay"})[0].name == "bank__pay"


def test_weights_decay_and_are_forgotten() -> None:
    clock = Clock()
    prior = UsagePrior(clock=clock)
    prior.answered(("issuer", "alice"), "q", ["a__b"])
    prior.called(("issuer", "alice"), "a__b")
    first = prior.boosts("q")["a__b"]
    clock.now += prior.bounds.half_life
    assert prior.boosts("q")["a__b"] == pytest.approx(first / 2)
    clock.now += prior.bounds.half_life * 10
    assert prior.boosts("q") == {}
    assert prior.records() == []


def test_the_saved_prior_holds_no_principal_and_no_query(tmp_path: Path) -> None:
    path = tmp_path / "finder-prior.json"
    clock = Clock()
    prior = UsagePrior(path, clock=clock)
    prior.answered(("https://issuer.example", "alice@example.com"), "Forecast for Lisbon", ["weather__forecast"])
    prior.called(("https://issuer.example", "alice@example.com"), "weather__forecast")
    prior.save()
    text = path.read_text()
    for secret in ("alice", "issuer.example", "Lisbon", "lisbon", "Forecast"):
        assert secret not in text
    loaded = UsagePrior.load(path, clock=clock)
    assert loaded.boosts("forecast for lisbon!") == prior.boosts("Forecast for Lisbon")
    assert not loaded.called(("https://issuer.example", "alice@example.com"), "weather__forecast")


def test_a_saved_rank_never_makes_a_search_deeper_than_the_finder_allows(tmp_path: Path) -> None:
    path = tmp_path / "finder-prior.json"
    record = {"query": query_key("q"), "tool": "a__b", "weight": 1, "updated": Clock().now, "rank": 1000}
    path.write_text(json.dumps({"version": 1, "pairs": [record]}))
    prior = UsagePrior.load(path, clock=Clock())
    assert len(prior) == 1
    assert prior.depth("q", 5) == MAX_DEPTH


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"version": 99, "pairs": []}),
        json.dumps({"version": 1, "pairs": [{"query": "Forecast for Lisbon", "tool": "a__b"}]}),
        json.dumps(
            {"version": 1, "pairs": [{"query": "0" * 32, "tool": "a__b", "weight": "nan", "updated": 1, "rank": 1}]}
        ),
        json.dumps({"version": 1, "pairs": [{"query": "0" * 32, "tool": 7, "weight": 1, "updated": 1, "rank": 1}]}),
        json.dumps(
            {"version": 1, "pairs": [{"query": "0" * 32, "tool": "a__b", "weight": 1, "updated": 1, "rank": -3}]}
        ),
        json.dumps([1, 2, 3]),
    ],
)
def test_a_damaged_prior_file_is_named_and_ignored(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "finder-prior.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="aggregator.search.learning"):
        prior = UsagePrior.load(path, clock=Clock())
    assert len(prior) == 0
    assert [getattr(record, "file", None) for record in caplog.records] == [str(path)]


# The replay: real tasks, a real index, the session's model.


def dev_subset() -> tuple[list[ToolDocument], list[Task]]:
    """Whole servers of the first dev tasks while they fit in `CATALOG_TOOLS` tools, and those tasks."""
    if not DATA.is_dir():
        pytest.skip(f"the dev data is not at {DATA}")
    tools = [json.loads(line) for line in (DATA / "tools.jsonl").read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in (DATA / "queries.jsonl").read_text().splitlines() if line.strip()]
    sizes: dict[str, int] = {}
    for tool in tools:
        sizes[tool["server"]] = sizes.get(tool["server"], 0) + 1
    servers: set[str] = set()
    tasks = []
    for record in records:
        needed = {gold.split("/", 1)[0] for gold in record["gold"]}
        if record["gold"] and sum(sizes[server] for server in servers | needed) <= CATALOG_TOOLS:
            servers |= needed
            tasks.append(Task(record["query"], frozenset(gold.replace("/", "__", 1) for gold in record["gold"])))
    documents: dict[str, ToolDocument] = {}
    for tool in tools:
        if tool["server"] in servers:
            document = ToolDocument(
                name=f"{tool['server']}__{tool['tool']}",
                server=tool["server"],
                title=None,
                description=tool.get("description") or "",
                input_schema=tool.get("input_schema") or {},
                server_description=tool.get("server_description") or "",
            )
            documents.setdefault(document.name, document)
    return list(documents.values()), tasks


@pytest.fixture
async def dev(tmp_path: Path, embedder: Embedder) -> AsyncIterator[tuple[ToolIndex, list[ToolDocument], list[Task]]]:
    """The dev subset's index (the session's model embeds it once), its documents and its tasks."""
    documents, tasks = dev_subset()
    async with ToolIndex(tmp_path / "index", embedder) as index:
        await index.sync(documents)
        await index.wait_embedded()
        yield index, documents, tasks


def recall(ranked: Sequence[str], gold: frozenset[str], k: int) -> float:
    """The share of the task's gold tools found in the top `k` (bench/_crossval.py's R@k)."""
    return len(gold & set(ranked[:k])) / len(gold)


def reworded(query: str) -> str:
    """The same task asked again, as people repeat themselves: other case, spacing and punctuation."""
    return "  " + query.upper().replace(",", " ,").rstrip(".") + "?"


async def test_replayed_sessions_raise_r_at_1_on_repeated_tasks_and_leave_new_ones_alone(
    dev: tuple[ToolIndex, list[ToolDocument], list[Task]],
) -> None:
    dev_index, documents, tasks = dev
    allowed = frozenset(document.name for document in documents)
    repeated, unseen = tasks[0::2], tasks[1::2]
    clock = Clock()
    prior = UsagePrior(clock=clock)

    async def ask(who: str, query: str, learning: UsagePrior | None) -> list[str]:
        clock.now += 1
        result = await learned_search(dev_index, learning, ("issuer", who), query, allowed=allowed, top_k=10)
        return [found.name for found in result.hits]

    async def measure(group: list[Task], learning: UsagePrior | None, *, again: bool = False) -> tuple[float, float]:
        """R@1 and R@5 of `group` for a caller who never asked before."""
        ranked = [await ask("newcomer", reworded(t.query) if again else t.query, learning) for t in group]
        pairs = list(zip(ranked, group, strict=True))
        return (
            sum(recall(names, task.gold, 1) for names, task in pairs) / len(pairs),
            sum(recall(names, task.gold, 5) for names, task in pairs) / len(pairs),
        )

    baseline_repeated = await measure(repeated, None, again=True)
    baseline_unseen = await measure(unseen, None)
    learned = 0
    for session in range(SESSIONS):
        for task in repeated:
            caller = ("issuer", f"session-{session}")
            shown = await ask(caller[1], task.query, prior)
            if session == 0 and shown and shown[0] not in task.gold:  # one session tries a wrong tool first
                prior.called(caller, shown[0])
            learned += sum(prior.called(caller, name) for name in shown if name in task.gold)
    after_repeated = await measure(repeated, prior, again=True)
    after_unseen = await measure(unseen, prior)
    print(
        f"\nreplay: {len(documents)} tools, {len(repeated)} repeated and {len(unseen)} unseen tasks, "
        f"{SESSIONS} sessions, {learned} gold calls learned, {len(prior)} pairs; R@1 / R@5 "
        f"repeated {baseline_repeated[0]:.3f} / {baseline_repeated[1]:.3f} -> {after_repeated[0]:.3f} / "
        f"{after_repeated[1]:.3f}, unseen {baseline_unseen[0]:.3f} / {baseline_unseen[1]:.3f} -> "
        f"{after_unseen[0]:.3f} / {after_unseen[1]:.3f}"
    )
    assert learned > 0
    assert after_repeated[0] > baseline_repeated[0], "R@1 rises on repeated tasks"
    assert after_repeated[1] >= baseline_repeated[1]
    assert after_unseen[0] >= baseline_unseen[0], "R@1 does not fall on unseen tasks"
    assert after_unseen[1] >= baseline_unseen[1]


# End to end: a gateway with search_learning on, both eras.

SCOPES = """
finder-users: [{server: mcpgw, methods: [tools/list, tools/call], tools: [intelligent_tool_finder, call_tool]}]
echo-only: [{server: echo, methods: [tools/list, tools/call], tools: ["*"]}]
everything: [{server: "*", methods: [tools/list, tools/call], tools: ["*"]}]
"""
QUERY = "add two integers and tell me the weather"


@pytest.fixture(scope="module", params=[True, False], ids=["lean-path", "sdk-path"])
async def learning_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, weather_url: str, echo_url: str
) -> AsyncIterator[LiveGateway]:
    """A gateway with `search_learning` on, serving `tools/call` on the lean path or, with it off, the SDK's."""
    servers = {
        "weather": {"transport": "streamable-http", "url": weather_url, "description": "Weather forecasts"},
        "echo": {"transport": "streamable-http", "url": echo_url},
    }
    directory = tmp_path_factory.mktemp("learning-gateway")
    # No model (a path without one): full-text answers are enough here, and the session's model is not loaded again.
    model = str(directory / "no-model")
    async with serve_gateway(
        directory, servers=servers, scopes=SCOPES, search_learning=True, search_model=model, lean_path=request.param
    ) as live:
        yield live


@pytest.mark.parametrize("era", ["legacy", "auto"])
async def test_a_call_after_a_finder_answer_is_learned_and_never_reaches_a_forbidden_caller(
    learning_gateway: LiveGateway, era: Era
) -> None:
    query = f"{QUERY} ({era})"
    async with learning_gateway.client(f"learner-{era}", scopes=["finder-users", "everything"], era=era) as client:
        shown = await call_structured(client, "intelligent_tool_finder", {"query": query, "top_k": 10})
        names = [tool["name"] for tool in shown["tools"]]
        assert "weather__get_forecast" in names
        await client.call_tool("weather__get_forecast", {"city": "Lisbon"})
        discovered = await call_structured(client, "intelligent_tool_finder", {"query": query + " again", "top_k": 10})
        assert "echo__add" in [tool["name"] for tool in discovered["tools"]]
        await client.call_tool("call_tool", {"name": "echo__add", "arguments": {"a": 1, "b": 2}})
    prior = learning_gateway.gateway.finder.prior
    assert prior is not None
    assert set(prior.boosts(query)) == {"weather__get_forecast"}, "a plain tools/call is learned"
    assert set(prior.boosts(query + " again")) == {"echo__add"}, "a discovery-mode call_tool is learned"

    async with learning_gateway.client(f"restricted-{era}", scopes=["finder-users", "echo-only"], era=era) as client:
        found = await call_structured(client, "intelligent_tool_finder", {"query": query, "top_k": 10})
    assert {tool["server"] for tool in found["tools"]} == {"echo"}, "the prior never shows a forbidden tool"


async def test_the_gateway_keeps_the_prior_in_data_dir_without_principals(learning_gateway: LiveGateway) -> None:
    async with learning_gateway.client("persisted", scopes=["finder-users", "everything"]) as client:
        await call_structured(client, "intelligent_tool_finder", {"query": "forecast for Oslo", "top_k": 5})
        await client.call_tool("weather__get_forecast", {"city": "Oslo"})
    prior = learning_gateway.gateway.finder.prior
    assert prior is not None and prior.path == learning_gateway.gateway.settings.data_dir / "finder-prior.json"
    assert prior.boosts("forecast for oslo")
    prior.save()
    text = prior.path.read_text() if prior.path else ""
    assert "weather__get_forecast" in text
    assert "persisted" not in text and "Oslo" not in text and "oslo" not in text


def test_learning_is_off_unless_turned_on() -> None:
    assert Settings.model_fields["search_learning"].default is False
    assert "multi-tenant" in (Settings.model_fields["search_learning"].description or "")
