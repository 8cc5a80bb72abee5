"""`check-config --connect` fails (exit 1) when an upstream cannot be reached, and names each one."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.commands import run_command


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_upstreams_fail_the_check_and_are_each_named(tmp_path: Path) -> None:
    servers = tmp_path / "servers.yaml"
    servers.write_text(
        "servers:\n"
        "  clock:\n    transport: stdio\n    command: mcp-server-time\n"
        "  gone:\n    transport: stdio\n    command: /nonexistent/mcp-server\n"
        f"  closed:\n    transport: streamable-http\n    url: http://127.0.0.1:{closed_port()}/mcp\n"
    )
    config = tmp_path / "gateway.yaml"
    config.write_text(f"servers_file: {servers}\ndata_dir: {tmp_path / 'data'}\nconnect_timeout: 10\n")
    result = run_command("check-config", "--config", str(config), "--connect")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "  gone: not reachable: " in result.stdout
    assert "  closed: not reachable: " in result.stdout
    assert "clock: not reachable" not in result.stdout
    assert "upstreams: 2 of 3 not reachable" in result.stdout
