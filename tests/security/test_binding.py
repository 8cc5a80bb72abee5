"""`serve` refuses to listen beyond loopback without `public_url` (exit 2, a message saying why):
the URLs it hands out would otherwise have to come from a caller's Host header."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.commands import run_command_in_thread
from tests.conftest import gateway_process
from tests.harness import SECRET

pytestmark = pytest.mark.anyio

PUBLIC_URL = "https://mcp.example.com/gateway/mcp"

CONFIG = {"auth": {"gateway_keys": [{"kid": "tests", "secret_env": "BINDING_TEST_KEY"}]}, "data_dir": "data"}


@pytest.mark.parametrize("host", ["::", "127.0.0.1.example"])  # the unspecified address, a name
async def test_serve_refuses_to_listen_beyond_loopback_without_public_url(tmp_path: Path, host: str) -> None:
    (tmp_path / "servers.yaml").write_text("servers: {}\n")
    (tmp_path / "gateway.yaml").write_text(json.dumps(CONFIG))
    servers, config = str(tmp_path / "servers.yaml"), str(tmp_path / "gateway.yaml")
    result = await run_command_in_thread(
        "serve", "--servers", servers, "--config", config, "--host", host, "--port", "0", environment=environment()
    )
    assert result.returncode == 2, result.stderr
    assert f"listening on {host} (beyond loopback) needs public_url" in result.stderr
    assert "READY" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("host", "config"),
    [
        ("127.0.0.2", CONFIG),
        ("0.0.0.0", {**CONFIG, "public_url": PUBLIC_URL}),
    ],
    ids=["other loopback address", "public_url set"],
)
async def test_serve_starts_on_loopback_or_with_public_url(tmp_path: Path, host: str, config: dict[str, Any]) -> None:
    (tmp_path / "servers.yaml").write_text("servers: {}\n")
    (tmp_path / "gateway.yaml").write_text(json.dumps(config))
    extra = ("--config", str(tmp_path / "gateway.yaml"), "--host", host)
    async with gateway_process(tmp_path / "servers.yaml", *extra, env=environment(), insecure_dev=False) as (url, _):
        assert url == config.get("public_url", url)


def environment() -> dict[str, str]:
    return {"BINDING_TEST_KEY": SECRET}


@pytest.mark.parametrize(
    ("host", "public_url", "refused"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.0.2.10", None, True),
        ("gateway.example", None, True),
        ("127.0.0.1.example", None, True),
        ("127.0.0.1", None, False),
        ("127.0.0.2", None, False),
        ("::1", None, False),
        ("localhost", None, False),
        ("0.0.0.0", PUBLIC_URL, False),
    ],
)
def test_which_binds_need_public_url(host: str, public_url: str | None, refused: bool) -> None:
    """The rule the two process tests above show end to end, for every kind of bind address."""
    from aggregator.cli.serve import _refuse_unnamed
    from aggregator.config.settings import load_settings

    settings = load_settings(None, host=host, public_url=public_url)
    assert (_refuse_unnamed(settings) is not None) == refused
