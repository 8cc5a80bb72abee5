"""`mcp-remote` 0.15, what Claude Desktop launches to reach a remote server, between a stdio host
(the Python SDK, speaking 2025-11-25 as desktop hosts do) and the gateway.

With `--protocol legacy` mcp-remote forwards the host's `initialize`; with `--protocol auto` it finds
the gateway speaks 2026-07-28 and bridges every request into that era.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.harness import LiveGateway, text_of
from tests.interop.conftest import EXPORTED_TOOLS, FORECAST_ARGUMENTS, SUBJECT
from tests.interop.node import CLIENT_DEADLINE, NODE22, NODE_MODULES, redacted, requires

pytestmark = [pytest.mark.anyio, requires("mcp-remote")]
MCP_REMOTE = NODE_MODULES / ".bin" / "mcp-remote"
BRIDGED = "Remote server speaks MCP 2026-07-28"  # what mcp-remote logs when it bridges into the modern era


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_a_desktop_host_uses_the_gateway_through_mcp_remote(
    gateway: LiveGateway, protocol: str, tmp_path: Path, token: str
) -> None:
    home = tmp_path / "home"  # mcp-remote keeps OAuth state in ~/.mcp-auth
    home.mkdir()
    command = StdioServerParameters(
        command=str(NODE22),
        args=[
            str(MCP_REMOTE),
            gateway.url,
            "--header",
            f"Authorization: Bearer {token}",
            "--transport",
            "http-only",
            "--protocol",
            protocol,
        ],
        env={"HOME": str(home)},
    )
    title = f"desktop note via mcp-remote {protocol}"
    mark = gateway.log.mark()
    errors = tmp_path / "mcp-remote.log"
    with errors.open("w") as errlog:
        try:
            with anyio.fail_after(CLIENT_DEADLINE):
                async with Client(stdio_client(command, errlog=errlog), mode="legacy") as client:
                    assert client.protocol_version == "2025-11-25"
                    names = {tool.name for tool in (await client.list_tools()).tools}
                    forecast = await client.call_tool("weather__get_forecast", FORECAST_ARGUMENTS)
                    added = await client.call_tool("notes__add_note", {"title": title, "body": "from a desktop host"})
                    listed = await client.call_tool("notes__list_notes", {})
        except Exception as error:
            raise AssertionError(f"mcp-remote failed; its log:\n{redacted(errors.read_text())}") from error
    log = errors.read_text()
    assert names == EXPORTED_TOOLS
    assert not forecast.is_error and forecast.structured_content is not None
    assert forecast.structured_content["city"] == "Lisbon" and len(forecast.structured_content["days"]) == 2
    assert not added.is_error
    assert title in text_of(listed)
    assert (BRIDGED in log) == (protocol == "auto"), redacted(log)
    # The gateway served the token's subject: the header reached it through mcp-remote.
    call = rf"request principal={SUBJECT} method=tools/call target=notes__add_note outcome=ok "
    await gateway.log.wait_for(call, after=mark)
