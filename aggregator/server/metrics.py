"""Prometheus metrics, written by hand in the text exposition format (version 0.0.4): no extra dependency.

    mcp_aggregator_requests_total{method,upstream,tool,outcome}         counter
    mcp_aggregator_request_errors_total{method,upstream,tool,outcome}   counter: requests whose outcome is not ok
    mcp_aggregator_request_duration_seconds{method,upstream,tool}       histogram
    mcp_aggregator_upstream_state{upstream,state}                       gauge: 1 for the current state, else 0
    mcp_aggregator_upstream_tools{upstream}                             gauge: tools as last listed
    mcp_aggregator_upstream_probe_seconds{upstream}                     gauge: how long the last listing took
    mcp_aggregator_finder_duration_seconds{mode}                        histogram: the tool finder reports here
    mcp_aggregator_tool_definition_changes_total{upstream,change,action}  counter: pinning decisions (trust.gate)
    mcp_aggregator_tools_held{upstream}                                 gauge: tool definitions awaiting approval

Requests are recorded by `edge.answer`. Label values come from the catalog, never from what a
caller typed: a tool the catalog does not know is counted under `tool=""`, so callers cannot grow
the number of series (nor learn names through it). Upstream gauges are read from the pool at scrape
time, so they are never stale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aggregator.catalog.catalog import Catalog, Entry
from aggregator.errors import UnknownNameError
from aggregator.trust.gate import Gate
from aggregator.upstreams.state import UpstreamState
from aggregator.upstreams.upstream import Upstream

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

RequestLabels = Callable[[str, str | None], tuple[str, str]]
"""(method, requested name) -> (upstream, tool) label values; empty strings where unknown."""


class Counter:
    """A monotonically increasing count per label combination."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *values: str, amount: float = 1.0) -> None:
        self._values[values] = self._values.get(values, 0.0) + amount

    def value(self, *values: str) -> float:
        return self._values.get(values, 0.0)

    def samples(self) -> Iterator[tuple[str, tuple[str, ...], tuple[str, ...], float]]:
        for values, count in sorted(self._values.items()):
            yield self.name, self.labels, values, count


class Gauge(Counter):
    """A value that goes up and down; here always rebuilt at scrape time."""

    kind = "gauge"

    def set(self, *values: str, value: float) -> None:
        self._values[values] = value


class Histogram:
    """Observations counted into cumulative buckets, with their sum and count, per label combination."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.buckets = buckets
        self._series: dict[tuple[str, ...], _Series] = {}

    def observe(self, value: float, *values: str) -> None:
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = _Series([0] * len(self.buckets))
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                series.counts[index] += 1
        series.total += value
        series.count += 1

    def count(self, *values: str) -> int:
        series = self._series.get(values)
        return series.count if series else 0

    def samples(self) -> Iterator[tuple[str, tuple[str, ...], tuple[str, ...], float]]:
        for values, series in sorted(self._series.items()):
            for bound, count in zip(self.buckets, series.counts, strict=True):
                yield f"{self.name}_bucket", (*self.labels, "le"), (*values, _number(bound)), count
            yield f"{self.name}_bucket", (*self.labels, "le"), (*values, "+Inf"), series.count
            yield f"{self.name}_sum", self.labels, values, series.total
            yield f"{self.name}_count", self.labels, values, series.count


@dataclass(slots=True)
class _Series:
    counts: list[int]
    total: float = 0.0
    count: int = 0


Family = Counter | Histogram


class Metrics:
    """The gateway's metrics: request counters and latencies, upstream health, the finder hook."""

    def __init__(self, labels_of: RequestLabels | None = None, gate: Gate | None = None) -> None:
        self._labels_of = labels_of or (lambda method, name: ("", ""))
        self._gate = gate
        request = ("method", "upstream", "tool")
        self.requests = Counter("mcp_aggregator_requests_total", "MCP requests answered.", (*request, "outcome"))
        self.errors = Counter(
            "mcp_aggregator_request_errors_total", "MCP requests that did not succeed.", (*request, "outcome")
        )
        self.latency = Histogram(
            "mcp_aggregator_request_duration_seconds", "Time to answer an MCP request, in seconds.", request
        )
        self.finder = Histogram(
            "mcp_aggregator_finder_duration_seconds", "Time to answer a tool-finder query, in seconds.", ("mode",)
        )

    def observe_request(self, method: str, name: str | None, outcome: str, seconds: float) -> None:
        """Count one answered request and its latency (called by `edge.answer`)."""
        upstream, tool = self._labels_of(method, name)
        self.requests.inc(method, upstream, tool, outcome)
        if outcome != "ok":
            self.errors.inc(method, upstream, tool, outcome)
        self.latency.observe(seconds, method, upstream, tool)

    def observe_finder(self, seconds: float, mode: str) -> None:
        """Record one tool-finder query (`mode`: hybrid, vector or full-text)."""
        self.finder.observe(seconds, mode)

    def render(self, upstreams: Iterable[Upstream]) -> str:
        """Every metric in the Prometheus text format, upstream gauges read from `upstreams` now."""
        pinning = pinning_families(self._gate) if self._gate is not None else []
        return exposition(
            [self.requests, self.errors, self.latency, self.finder, *upstream_gauges(upstreams), *pinning]
        )


def pinning_families(gate: Gate) -> list[Family]:
    """Pinning decisions so far, and the definitions held now, per upstream."""
    changes = Counter(
        "mcp_aggregator_tool_definition_changes_total",
        "New or changed tool definitions, by what the gateway or an operator did with them.",
        ("upstream", "change", "action"),
    )
    for labels, count in gate.counts.items():
        changes.inc(*labels, amount=float(count))
    held = Gauge("mcp_aggregator_tools_held", "Tool definitions held until an operator approves them.", ("upstream",))
    for server, count in gate.held_counts().items():
        held.set(server, value=float(count))
    return [changes, held]


def upstream_gauges(upstreams: Iterable[Upstream]) -> list[Family]:
    """Health, tool counts and probe latency of each upstream, as they stand."""
    state = Gauge(
        "mcp_aggregator_upstream_state", "1 for the upstream's current state, 0 otherwise.", ("upstream", "state")
    )
    tools = Gauge("mcp_aggregator_upstream_tools", "Tools the upstream offers, as last listed.", ("upstream",))
    probe = Gauge("mcp_aggregator_upstream_probe_seconds", "Time the last listing of the upstream took.", ("upstream",))
    for upstream in upstreams:
        for candidate in UpstreamState:
            state.set(upstream.name, candidate.value, value=1.0 if upstream.state is candidate else 0.0)
        tools.set(upstream.name, value=float(len(upstream.tools)))
        if upstream.latency_ms is not None:
            probe.set(upstream.name, value=upstream.latency_ms / 1000)
    return [state, tools, probe]


def catalog_labels(catalog: Catalog, gateway_server: str, is_gateway_tool: Callable[[str], bool]) -> RequestLabels:
    """Label values for a request, looked up in the catalog: unknown names get empty labels."""

    def labels(method: str, name: str | None) -> tuple[str, str]:
        if name is None:
            return "", ""

        def exact(entry: Entry[Any]) -> bool:
            # Admits only the exact name, so a miss costs no search for suggestions.
            return bool(entry.item.name == name)

        try:
            if method == "tools/call":
                if is_gateway_tool(name):
                    return gateway_server, name
                return catalog.resolve_tool(name, exact).upstream, name
            if method == "prompts/get":
                return catalog.resolve_prompt(name, exact).upstream, ""
            if method == "resources/read":
                return catalog.resolve_resource(name, lambda server: True)[0], ""
        except UnknownNameError:
            pass
        return "", ""

    return labels


def exposition(families: Collection[Family]) -> str:
    """The text exposition format: HELP and TYPE lines, then one line per sample."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape(family.help, quotes=False)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for name, labels, values, value in family.samples():
            pairs = ",".join(f'{label}="{_escape(text)}"' for label, text in zip(labels, values, strict=True))
            lines.append(f"{name}{{{pairs}}} {_number(value)}" if pairs else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _escape(text: str, *, quotes: bool = True) -> str:
    escaped = text.replace("\\", "\\\\").replace("\n", "\\n")
    return escaped.replace('"', '\\"') if quotes else escaped


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))
