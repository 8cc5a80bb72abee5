"""Run the official MCP conformance suite against a server URL and judge it against a baseline.

The suite is the npm package `@modelcontextprotocol/conformance`, pinned in tools/package.json
and run with the Node 22 that `npm ci --prefix tools` installs (`tools/node22`). One run covers
one spec revision: `server --url URL --requirements REVISION` runs every scenario that revision
requires, each at that revision's wire (2025-11-25: initialize handshake and sessions;
2026-07-28: stateless), plus the scenarios it runs but does not score. Each scenario leaves
`checks.json` in the output directory; `run_suite` reads them into one outcome per check, keyed
`<scenario>:<check id>` as in the suite's own expected-failures files.

A baseline file lists the failures we expect, one per line: `<scenario>:<check id>  # reason`,
or `<scenario>  # reason` when any check of that scenario may fail. `judge` reports failures
outside the baseline and baseline entries that now pass, so a baseline can only shrink.

INFO checks carry no verdict, so a target can dodge a check by answering differently: the gateway
once turned `server-sse-disconnect-resume` from a pass into an INFO without failing anything. Given
the outcomes of the same run against the upstream directly, `judge` counts a check that passes
there and is only INFO through the gateway as a failure (a downgrade), which a baseline must list.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
NODE22 = TOOLS / "node22"
SUITE = TOOLS / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
REVISIONS = ("2025-11-25", "2026-07-28")

# A healthy scenario finishes in well under two seconds; a whole revision in about ten.
SCENARIO_TIMEOUT_SECONDS = 15
SUITE_TIMEOUT_SECONDS = 170

_RESULT_DIRECTORY = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")
_SCENARIO_STARTED = re.compile(r"^=== Running scenario: (?P<scenario>\S+) ===$", re.MULTILINE)
# Worst first: a check id that occurs several times in a scenario takes its worst status; INFO
# counts only when the check has no verdict at all.
_SEVERITY = {"FAILURE": 2, "WARNING": 1, "SUCCESS": 0, "INFO": -1}


class HarnessError(RuntimeError):
    """The suite produced no verdicts: it could not run, timed out or crashed (not a failing check)."""


@dataclass(frozen=True)
class Outcome:
    """The verdict on one check: `failed` covers the suite's FAILURE and WARNING statuses, `info`
    a check reported only as INFO (no verdict)."""

    status: Literal["passed", "failed", "info"]
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass(frozen=True)
class Judgement:
    """How a run compares with its baseline."""

    unexpected: dict[str, str]
    """Failing (or downgraded) checks the baseline does not list, with the suite's message."""
    stale: list[str]
    """Baseline entries whose checks now pass: delete them."""
    expected: list[str]
    """Failing (or downgraded) checks the baseline lists."""

    @property
    def ok(self) -> bool:
        return not self.unexpected and not self.stale


def suite_installed() -> bool:
    return SUITE.is_file() and (TOOLS / "node_modules" / "node" / "bin" / "node").is_file()


def run_suite(url: str, revision: str, output_dir: Path) -> dict[str, Outcome]:
    """Run every scenario `revision` requires (and those it runs unscored) against `url`."""
    if revision not in REVISIONS:
        raise ValueError(f"Unknown revision {revision!r}; expected one of {', '.join(REVISIONS)}.")
    command = [
        str(NODE22),
        str(SUITE),
        "server",
        "--url",
        url,
        "--requirements",
        revision,
        "--output-dir",
        str(output_dir),
        "--timeout",
        str(SCENARIO_TIMEOUT_SECONDS * 1000),
    ]
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=SUITE_TIMEOUT_SECONDS, cwd=TOOLS, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise HarnessError(
            f"The conformance suite ({revision}) did not finish within {error.timeout:.0f} s."
        ) from error
    log = finished.stdout + finished.stderr
    scenarios = _SCENARIO_STARTED.findall(finished.stdout)
    if not scenarios:
        raise HarnessError(f"The conformance suite ({revision}) ran no scenario (exit {finished.returncode}):\n{log}")
    outcomes = read_results(output_dir, scenarios)
    if finished.returncode != 0 and not any(outcome.failed for outcome in outcomes.values()):
        raise HarnessError(
            f"The conformance suite ({revision}) exited {finished.returncode} with no failing check:\n{log}"
        )
    return outcomes


def read_results(output_dir: Path, scenarios: Sequence[str]) -> dict[str, Outcome]:
    """One outcome per `<scenario>:<check id>` from the run's checks.json files.

    A scenario that started but left no checks.json (the suite crashed inside it) becomes a
    failing `<scenario>:results` entry. A check reported only as INFO is an `info` outcome;
    SKIPPED checks are left out.
    """
    worst: dict[str, tuple[int, str]] = {}
    reported: set[str] = set()
    for checks_file in sorted(output_dir.glob("*/checks.json")):
        match = _RESULT_DIRECTORY.match(checks_file.parent.name)
        if match is None:
            continue
        scenario = match["scenario"]
        reported.add(scenario)
        for check in json.loads(checks_file.read_text()):
            severity = _SEVERITY.get(check["status"])
            if severity is None:
                continue
            key = f"{scenario}:{check['id']}"
            details = check.get("details") or {}
            said = check.get("errorMessage") or details.get("message") or check.get("description", "")
            message = f"{check['status']}: {said}"
            if key not in worst or severity > worst[key][0]:
                worst[key] = (severity, message)
    outcomes = {key: _outcome(severity, message) for key, (severity, message) in worst.items()}
    for scenario in scenarios:
        if scenario not in reported:
            outcomes[f"{scenario}:results"] = Outcome("failed", "the suite wrote no checks.json for this scenario")
    return outcomes


def _outcome(severity: int, message: str) -> Outcome:
    if severity > 0:
        return Outcome("failed", message)
    return Outcome("info", message) if severity < 0 else Outcome("passed")


def read_baseline(path: Path) -> dict[str, str]:
    """Baseline entries (`scenario` or `scenario:check`) mapped to their reasons."""
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        entry, _, reason = line.partition("#")
        entry = entry.strip()
        if not entry:
            continue
        if " " in entry or entry in entries:
            raise ValueError(f"{path}:{number}: expected one '<scenario>[:<check id>]  # reason' per line.")
        entries[entry] = reason.strip()
    return entries


def judge(
    outcomes: Mapping[str, Outcome], baseline: Mapping[str, str], direct: Mapping[str, Outcome] | None = None
) -> Judgement:
    """Compare a run with its baseline: what newly fails, and which entries are stale.

    With `direct` (the same revision's outcomes against the upstream itself), a check that passes
    there and is only INFO here fails too: a silent downgrade.
    """
    bad: dict[str, str] = {}
    for key, outcome in sorted(outcomes.items()):
        if outcome.failed:
            bad[key] = outcome.message
        elif outcome.status == "info" and direct is not None and key in direct and direct[key].passed:
            bad[key] = f"passes directly, only INFO through this target: {outcome.message}"
    unexpected: dict[str, str] = {}
    expected: list[str] = []
    for key, message in bad.items():
        if key in baseline or key.partition(":")[0] in baseline:
            expected.append(key)
        else:
            unexpected[key] = message
    stale: list[str] = []
    for entry in baseline:
        if ":" in entry:
            # A listed check that did not run is tolerated: its scenario may have stopped earlier.
            if entry in outcomes and outcomes[entry].passed:
                stale.append(entry)
        elif not any(key.partition(":")[0] == entry for key in bad):
            stale.append(entry)
    return Judgement(unexpected=unexpected, stale=stale, expected=expected)


def summarise(outcomes: Mapping[str, Outcome]) -> str:
    passed = sum(outcome.passed for outcome in outcomes.values())
    failed = sum(outcome.failed for outcome in outcomes.values())
    return f"{passed} passed, {failed} failed, {len(outcomes) - passed - failed} info only"


def main() -> int:
    """`python -m tests.conformance.harness URL REVISION [BASELINE] [--direct UPSTREAM_URL]`: run the suite
    and print the verdicts (with --direct, also against the upstream, to catch downgrades to INFO)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("url")
    parser.add_argument("revision", choices=REVISIONS)
    parser.add_argument("baseline", nargs="?", type=Path)
    parser.add_argument("--direct", help="the upstream's own URL: flag checks that pass there but are INFO here")
    arguments = parser.parse_args()
    direct = None
    with tempfile.TemporaryDirectory(prefix="conformance-") as results:
        outcomes = run_suite(arguments.url, arguments.revision, Path(results) / "target")
        if arguments.direct is not None:
            direct = run_suite(arguments.direct, arguments.revision, Path(results) / "direct")
    for key, outcome in sorted(outcomes.items()):
        print(f"{outcome.status:6}  {key}" + (f"  # {outcome.message}" if outcome.message else ""))
    print(summarise(outcomes))
    if arguments.baseline is None:
        return int(any(outcome.failed for outcome in outcomes.values()))
    judgement = judge(outcomes, read_baseline(arguments.baseline), direct)
    for key, message in judgement.unexpected.items():
        print(f"unexpected failure: {key}  # {message}")
    for entry in judgement.stale:
        print(f"stale baseline entry: {entry}")
    return int(not judgement.ok)


if __name__ == "__main__":
    raise SystemExit(main())
