"""The conformance harness's reading of suite results and baselines, on results written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conformance.harness import Outcome, judge, read_baseline, read_results


def write_checks(output_dir: Path, scenario: str, *checks: tuple[str, str]) -> None:
    directory = output_dir / f"server-{scenario}-2026-11-24T23-17-14-681Z"
    directory.mkdir(parents=True)
    entries = [
        {"id": check_id, "status": status, "errorMessage": f"{check_id} said {status}"} for check_id, status in checks
    ]
    (directory / "checks.json").write_text(json.dumps(entries))


def test_a_repeated_check_takes_its_worst_status_and_info_only_counts_without_a_verdict(tmp_path: Path) -> None:
    write_checks(tmp_path, "server-stateless", ("meta-400", "SUCCESS"), ("meta-400", "FAILURE"), ("note", "INFO"))
    write_checks(tmp_path, "ping", ("ping", "INFO"), ("ping", "SUCCESS"), ("sse-retry", "WARNING"), ("skip", "SKIPPED"))

    outcomes = read_results(tmp_path, ["server-stateless", "ping"])

    assert outcomes == {
        "server-stateless:meta-400": Outcome("failed", "FAILURE: meta-400 said FAILURE"),
        "server-stateless:note": Outcome("info", "INFO: note said INFO"),
        "ping:ping": Outcome("passed"),
        "ping:sse-retry": Outcome("failed", "WARNING: sse-retry said WARNING"),
    }


def test_a_scenario_that_left_no_checks_fails(tmp_path: Path) -> None:
    write_checks(tmp_path, "ping", ("ping", "SUCCESS"))

    outcomes = read_results(tmp_path, ["ping", "caching"])

    assert not outcomes["caching:results"].passed


def test_only_failures_outside_the_baseline_are_unexpected() -> None:
    outcomes = {
        "caching:ttl": Outcome("failed", "FAILURE: no ttlMs"),
        "tasks-lifecycle:create": Outcome("failed", "FAILURE: no tasks"),
        "prompts-list:prompts-list": Outcome("failed", "FAILURE: Method not found"),
        "ping:ping": Outcome("passed"),
    }
    baseline = {"tasks-lifecycle": "not implemented", "prompts-list:prompts-list": "not served"}

    judgement = judge(outcomes, baseline)

    assert judgement.unexpected == {"caching:ttl": "FAILURE: no ttlMs"}
    assert judgement.expected == ["prompts-list:prompts-list", "tasks-lifecycle:create"]
    assert judgement.stale == []


def test_baseline_entries_that_pass_are_stale_but_checks_that_did_not_run_are_not() -> None:
    outcomes = {"ping:ping": Outcome("passed"), "tasks-lifecycle:create": Outcome("passed")}
    baseline = {"ping:ping": "", "tasks-lifecycle": "", "server-stateless:never-reached": ""}

    judgement = judge(outcomes, baseline)

    assert judgement.stale == ["ping:ping", "tasks-lifecycle"]
    assert not judgement.ok


def test_baseline_lines_carry_an_entry_and_a_reason(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.txt"
    baseline.write_text("# comment\n\nping:ping  # not served\ntasks-lifecycle\n")

    assert read_baseline(baseline) == {"ping:ping": "not served", "tasks-lifecycle": ""}

    baseline.write_text("ping:ping extra words  # malformed\n")
    with pytest.raises(ValueError, match=r"baseline.txt:1"):
        read_baseline(baseline)


def test_a_check_that_passes_directly_but_is_only_info_through_the_gateway_fails() -> None:
    direct = {
        "server-sse-polling:server-sse-disconnect-resume": Outcome("passed"),
        "server-sse-polling:incoming-sse-event": Outcome("info", "INFO: event"),
    }
    through_gateway = {
        "server-sse-polling:server-sse-disconnect-resume": Outcome("info", "INFO: did not disconnect mid-call"),
        "server-sse-polling:incoming-sse-event": Outcome("info", "INFO: event"),
    }

    judgement = judge(through_gateway, {}, direct)

    assert judgement.unexpected == {
        "server-sse-polling:server-sse-disconnect-resume": (
            "passes directly, only INFO through this target: INFO: did not disconnect mid-call"
        )
    }
    assert judge(through_gateway, {}).ok  # without the direct run there is nothing to compare


def test_a_listed_downgrade_is_expected_and_goes_stale_once_it_passes() -> None:
    direct = {"server-sse-polling:server-sse-disconnect-resume": Outcome("passed")}
    baseline = {"server-sse-polling:server-sse-disconnect-resume": "not forwarded", "server-sse-polling": ""}

    downgraded = judge({"server-sse-polling:server-sse-disconnect-resume": Outcome("info")}, baseline, direct)
    fixed = judge({"server-sse-polling:server-sse-disconnect-resume": Outcome("passed")}, baseline, direct)

    assert downgraded.ok and downgraded.expected == ["server-sse-polling:server-sse-disconnect-resume"]
    assert fixed.stale == ["server-sse-polling:server-sse-disconnect-resume", "server-sse-polling"]
