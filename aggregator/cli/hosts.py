"""The client configs `serve` prints after READY: one block per host, each in that host's own format.

Claude Code adds an HTTP server from its command line (`claude mcp add --transport http`). Claude
Desktop launches commands only, so `npx mcp-remote` bridges it to the URL (the header value travels
in an environment variable, since some hosts split arguments at spaces). Cursor's `mcpServers`
entry takes a `url`; VS Code's `servers` entry takes `type: http` and a `url`. On a secured gateway
each one sends `Authorization: Bearer <token>`: the placeholder stands for a gateway token (from
`mcp-aggregator token mint`, `mcp-aggregator login` or the identity provider).
"""

from __future__ import annotations

import json
import shlex
from typing import Any
from urllib.parse import urlsplit

SERVER_NAME = "aggregator"
TOKEN_PLACEHOLDER = "<token>"
HOSTS = ("Claude Code", "Claude Desktop", "Cursor", "VS Code")
_WHERE = {
    "Claude Code": "run in a shell",
    "Claude Desktop": "claude_desktop_config.json; it launches commands, so mcp-remote bridges to the URL",
    "Cursor": ".cursor/mcp.json or ~/.cursor/mcp.json",
    "VS Code": ".vscode/mcp.json",
}


def client_configs(url: str, secured: bool) -> dict[str, str]:
    """Each host's config for the gateway at `url`, by host name, as the text to paste."""
    bearer = f"Bearer {TOKEN_PLACEHOLDER}"
    headers = {"headers": {"Authorization": bearer}} if secured else {}
    claude_code = shlex.join(["claude", "mcp", "add", "--transport", "http", SERVER_NAME, url])
    if secured:
        claude_code += " --header " + shlex.quote(f"Authorization: {bearer}")
    bridge: dict[str, Any] = {"command": "npx", "args": ["-y", "mcp-remote", url]}
    if not _mcp_remote_allows(url):
        bridge["args"].append("--allow-http")
    if secured:
        bridge["args"] += ["--header", "Authorization:${AUTH_HEADER}"]  # mcp-remote expands the variable
        bridge["env"] = {"AUTH_HEADER": bearer}
    return {
        "Claude Code": claude_code,
        "Claude Desktop": _json({"mcpServers": {SERVER_NAME: bridge}}),
        "Cursor": _json({"mcpServers": {SERVER_NAME: {"url": url, **headers}}}),
        "VS Code": _json({"servers": {SERVER_NAME: {"type": "http", "url": url, **headers}}}),
    }


def announcement(url: str, secured: bool) -> str:
    """What `serve` prints once it is ready: the READY line, then one `# Host: where` block per host."""
    lines = [f"READY {url}"]
    if secured:
        lines.append(
            f"Client configs (replace {TOKEN_PLACEHOLDER} with a gateway token, e.g. `mcp-aggregator token mint`):"
        )
    else:
        lines.append("Client configs (this gateway verifies no token):")
    for host, text in client_configs(url, secured).items():
        lines += [f"# {host}: {_WHERE[host]}", text]
    return "\n".join(lines)


def _mcp_remote_allows(url: str) -> bool:
    """Whether mcp-remote takes `url` without `--allow-http`: HTTPS, or plain HTTP to localhost/127.0.0.1."""
    parts = urlsplit(url)
    return parts.scheme == "https" or parts.hostname in ("localhost", "127.0.0.1")


def _json(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2)
