"""`mcp-aggregator serve` refuses to start where callers could not be identified."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.cli.main import main


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "no token verifier is configured"),
        (("--insecure-dev", "--host", "0.0.0.0"), "--insecure-dev is only allowed on loopback, not on 0.0.0.0"),
    ],
    ids=["no verifier", "insecure-dev off loopback"],
)
def test_serve_refuses_to_start_without_a_verifier_unless_insecure_dev_on_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    servers = tmp_path / "servers.yaml"
    servers.write_text("servers: {}\n")
    assert main(["serve", "--servers", str(servers), "--port", "0", *extra]) == 2
    assert message in capsys.readouterr().err
