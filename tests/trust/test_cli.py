"""`mcp-aggregator tools diff|approve|reject` on a pin store, as an operator types them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.cli.main import main
from aggregator.policy.audit import AuditLog
from aggregator.trust.gate import Gate
from aggregator.trust.store import PinStore
from tests.trust.test_gate import CHANGED, FIRST, spec


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Settings whose data_dir holds a pin store with a/b changed and c new, all held."""
    data = tmp_path / "data"
    gate = Gate(PinStore(data / "pins.json"), AuditLog(data / "audit.log"))
    gate.admit("shop", spec(on_change="hold"), FIRST)
    gate.admit("shop", spec(on_change="hold"), CHANGED)
    (tmp_path / "gateway.yaml").write_text(f"data_dir: {data}\n")
    return tmp_path / "gateway.yaml"


def test_diff_shows_why_each_tool_is_held_its_fingerprint_and_the_change(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "diff", "shop", "a", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("shop/a: changed, held since ")
    assert "(changed (on_change: hold))" in out
    assert "  fingerprint sha256:" in out
    assert '-  "description": "Does one thing.",' in out and '+  "description": "Does another thing.",' in out
    assert main(["tools", "diff", "--json", "--config", str(config)]) == 0
    assert [(v["tool"], v["change"]) for v in json.loads(capsys.readouterr().out)] == [
        ("a", "changed"),
        ("b", "changed"),
        ("c", "new"),
    ]


def test_approve_and_reject_move_the_tool_and_are_audited(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "approve", "shop", "c", "--config", str(config)]) == 0
    assert main(["tools", "reject", "shop", "a", "--config", str(config)]) == 0
    assert "approved shop/c (sha256:" in capsys.readouterr().out
    assert main(["tools", "diff", "--json", "--config", str(config)]) == 0
    assert [v["tool"] for v in json.loads(capsys.readouterr().out)] == ["b"]
    audit = [json.loads(line) for line in (config.parent / "data" / "audit.log").read_text().splitlines()]
    verdicts = [(e["tool"], e["action"]) for e in audit if e["principal"].startswith("cli:")]
    assert verdicts == [("c", "approved"), ("a", "rejected")]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["approve", "shop", "cc"], "Unknown held tool 'shop/cc'. Did you mean 'shop/c'?"),
        (["reject", "other", "c"], "Unknown held tool 'other/c'."),
        (["approve", "shop", "c", "--fingerprint", "sha256:00"], "with fingerprint 'sha256:00'"),
    ],
)
def test_a_verdict_on_nothing_held_is_one_sentence_and_changes_nothing(
    config: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    before = (config.parent / "data" / "pins.json").read_text()
    assert main(["tools", *arguments, "--config", str(config)]) == 1
    assert message in capsys.readouterr().err
    assert (config.parent / "data" / "pins.json").read_text() == before


def test_a_damaged_pin_store_is_reported_with_its_path(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (config.parent / "data" / "pins.json").write_text("[]")
    assert main(["tools", "approve", "shop", "c", "--config", str(config)]) == 2
    assert "pins.json: <root>: the pin store is malformed" in capsys.readouterr().err


def test_parsing_the_command_line_does_not_import_the_pin_store() -> None:
    code = "import sys; from aggregator.cli.main import _parser; _parser(); print('aggregator.trust' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
