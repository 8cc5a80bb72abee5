"""Read an MCP host's server list (Claude Desktop, Claude Code, Cursor, VS Code, fastmcp) as servers.yaml entries.

Every host keeps its servers as a JSON object of name -> entry: `mcpServers` (Claude Desktop,
Claude Code's `.mcp.json`, Cursor's `mcp.json`, fastmcp's MCPConfig) or `servers` (VS Code's
`.vscode/mcp.json`, or `mcp.servers` in its settings.json; both JSON with comments). An entry is
either a command (`command`, `args`, `env`, `cwd`) or a URL (`url`, `headers`), with `type` or
`transport` naming the transport (`stdio`, `http`/`streamable-http`, `sse`) or, without one,
implied by which of `command` and `url` it has.

Conversion keeps the operator's servers.yaml free of secrets: an `env` value, header, URL query
parameter or argument that looks like a credential (by its name or its shape) becomes a `${VAR}`
reference, and its value is returned in `Conversion.secrets` for the operator to put in the
gateway's environment (never in the file). Host variables become the gateway's: `${env:X}`
(VS Code, Cursor) and `${X}` (Claude Code) are `${X}`; a VS Code `${input:id}` is `${ID}`;
`${workspaceFolder}` and `${userHome}` are filled in. Names become valid server names (lowercase,
runs of other characters as `-`, at most 32), and every rename is reported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aggregator.errors import ConfigError, ConfigIssue

HOSTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "claude-desktop": ("Claude Desktop", ("mcpServers",)),
    "claude-code": ("Claude Code", ("mcpServers",)),
    "cursor": ("Cursor", ("mcpServers",)),
    "vscode": ("VS Code", ("servers", "mcp.servers")),
    "fastmcp": ("fastmcp", ("mcpServers",)),
}
"""`--from` value -> (the host's name, where its server object is, tried in order)."""

_TRANSPORTS = {
    "stdio": "stdio",
    "http": "streamable-http",
    "streamable-http": "streamable-http",
    "streamablehttp": "streamable-http",
    "streamable_http": "streamable-http",
    "sse": "sse",
}
_SECRET_NAME = re.compile(
    r"authorization|bearer|cookie|token|secret|passw|api[-_]?key|apikey|access[-_]?key|private[-_]?key|credential"
    r"|session|(^|[-_])pat($|[-_])|(^|[-_])key$",
    re.IGNORECASE,
)
_SECRET_SHAPE = re.compile(
    r"^(sk-|sk_|rk_|ghp_|gho_|ghs_|ghu_|github_pat_|glpat-|xox[abprs]-|AKIA[0-9A-Z]{12}|AIza|ya29\.|eyJ|Bearer\s|Basic\s)"
)
_RANDOM = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-.=+]{24,}$")
_HOST_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_TRAILING = re.compile(r"(?:\s|//[^\n]*(?:\n|$)|/\*.*?\*/)*[}\]]", re.DOTALL)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential taken out of the host's file: its variable, its value, and where it was."""

    variable: str
    value: str
    where: str


@dataclass(slots=True)
class Conversion:
    """One host entry as a servers.yaml entry, or why it cannot be one."""

    source: str
    name: str | None
    entry: dict[str, Any] | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)

    @property
    def variables(self) -> set[str]:
        """Every `${VAR}` the entry needs from the gateway's environment."""
        text = json.dumps(self.entry or {})
        return {match for match in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)}


def read_host_file(path: Path, host: str) -> dict[str, Any]:
    """The host's server object in `path` (JSON, comments and trailing commas allowed)."""
    label, locations = HOSTS[host]
    try:
        data = json.loads(_strip_jsonc(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(path), "", "file not found")]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError([ConfigIssue(str(path), "", f"cannot be read as JSON: {error}")]) from None
    for location in locations:
        found: Any = data
        for part in location.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if isinstance(found, dict):
            return found
    wanted = " or ".join(f"`{location}`" for location in locations)
    other = [name for name, (_, where) in HOSTS.items() if where != locations and _has(data, where)]
    hint = f"; it looks like --from {other[0]}" if other else ""
    raise ConfigError([ConfigIssue(str(path), "", f"no {wanted} object, where {label} keeps its servers{hint}")])


def _has(data: Any, locations: tuple[str, ...]) -> bool:
    return isinstance(data, dict) and any(isinstance(data.get(location.split(".")[0]), dict) for location in locations)


def convert(servers: dict[str, Any], host: str, path: Path) -> list[Conversion]:
    """Every entry of the host's server object as a servers.yaml entry (or a reason), in file order."""
    location = HOSTS[host][1][0]
    taken: dict[str, str] = {}  # variable -> value, across entries: one variable, one value
    conversions = []
    for source, spec in servers.items():
        conversion = Conversion(str(source), server_name(str(source)))
        if conversion.name is None:
            conversion.reason = f"'{source}' has no letter or digit to make a server name from"
        elif conversion.name != source:
            conversion.notes.append(f"renamed from '{source}' (server names are 1-32 of a-z, 0-9, '-')")
        if conversion.reason is None:
            try:
                conversion.entry = _entry(spec, conversion, f"{location}.{source}", host, path, taken)
            except _Skip as skip:
                conversion.reason = skip.reason
        conversions.append(conversion)
    return conversions


def server_name(name: str) -> str | None:
    """`My GitHub (work)` -> `my-github-work`: lowercase, other runs as `-`, at most 32 characters."""
    normal = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32].rstrip("-")
    return normal or None


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _entry(
    spec: Any, conversion: Conversion, where: str, host: str, path: Path, taken: dict[str, str]
) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise _Skip("not an object")
    kind = str(spec.get("type") or spec.get("transport") or "").lower()
    url = spec.get("url") or spec.get("serverUrl")
    if kind and kind not in _TRANSPORTS:
        raise _Skip(f"transport {kind!r} is not one of stdio, http, streamable-http, sse")
    transport = _TRANSPORTS.get(kind) or ("stdio" if "command" in spec else None)
    if transport is None and isinstance(url, str):
        transport = "sse" if urlsplit(url).path.rstrip("/").endswith("/sse") else "streamable-http"
    if transport is None:
        raise _Skip("neither a `command` nor a `url`")
    fill = _Filler(conversion, where, host, path, taken)
    entry: dict[str, Any] = {"transport": transport}
    if transport == "stdio":
        if not isinstance(spec.get("command"), str) or not spec["command"]:
            raise _Skip("a stdio server without a `command`")
        entry["command"] = fill.plain(spec["command"], "command")
        entry["args"] = fill.arguments([str(arg) for arg in spec.get("args") or []])
        env = {
            str(key): fill.secret_if(str(value), str(key), f"env.{key}", str(key)) for key, value in _map(spec, "env")
        }
        if env:
            entry["env"] = env
        if isinstance(spec.get("cwd"), str):
            entry["cwd"] = fill.plain(spec["cwd"], "cwd")
        if "mcp-remote" in " ".join(entry["args"]):
            conversion.notes.append("runs mcp-remote: the gateway can reach that URL itself (`url:` entry)")
    else:
        if not isinstance(url, str) or not url:
            raise _Skip(f"a {transport} server without a `url`")
        entry["url"] = fill.url(url)
        headers = {
            str(key): fill.secret_if(str(value), str(key), f"headers.{key}", f"{conversion.name}_{key}")
            for key, value in _map(spec, "headers")
        }
        if headers:
            entry["headers"] = headers
    for ignored in ("envFile", "auth", "oauth"):
        if ignored in spec:
            conversion.notes.append(f"`{ignored}` is not imported: configure it for the gateway instead")
    if spec.get("disabled") is True or spec.get("enabled") is False:
        entry["enabled"] = False
    if isinstance(spec.get("description"), str) and spec["description"].strip():
        entry["description"] = " ".join(spec["description"].split())
    return entry


def _map(spec: dict[str, Any], key: str) -> list[tuple[Any, Any]]:
    value = spec.get(key) or {}
    if not isinstance(value, dict):
        raise _Skip(f"`{key}` is not an object of name -> value")
    return list(value.items())


@dataclass(slots=True)
class _Filler:
    """Turns one entry's values into servers.yaml values: host variables translated, secrets referenced."""

    conversion: Conversion
    where: str
    host: str
    path: Path
    taken: dict[str, str]

    def plain(self, value: str, key: str) -> str:
        return _HOST_VARIABLE.sub(lambda match: self._variable(match.group(1), key), value)

    def secret_if(self, value: str, name: str, key: str, variable: str) -> str:
        """`value`, or a reference in its place when `name` or the value looks like a credential."""
        if not value or _HOST_VARIABLE.search(value) or not (_SECRET_NAME.search(name) or looks_secret(value)):
            return self.plain(value, key)
        scheme = re.match(r"^(Bearer|Basic|Token)\s+(\S.*)$", value, re.IGNORECASE)
        if scheme:
            return f"{scheme.group(1)} {self._secret(scheme.group(2), key, f'{self.conversion.name}_token')}"
        return self._secret(value, key, variable)

    def arguments(self, args: list[str]) -> list[str]:
        """Arguments with secrets referenced: `--api-key VALUE`, `--token=VALUE`, or a value shaped like one."""
        converted: list[str] = []
        for index, arg in enumerate(args):
            flag = args[index - 1] if index else ""
            if "=" in arg and arg.startswith("-"):
                option, value = arg.split("=", 1)
                converted.append(f"{option}={self._argument(value, option, index)}")
            elif flag.startswith("-") and "=" not in flag and _SECRET_NAME.search(flag):
                converted.append(self._argument(arg, flag, index, named=True))
            else:
                converted.append(self._argument(arg, "", index))
        return converted

    def _argument(self, value: str, option: str, index: int, *, named: bool = False) -> str:
        if _HOST_VARIABLE.search(value) or not (named or _SECRET_NAME.search(option) or looks_secret(value)):
            return self.plain(value, f"args[{index}]")
        name = option.lstrip("-") or f"arg{index}"
        return self._secret(value, f"args[{index}]", f"{self.conversion.name}_{name}")

    def url(self, url: str) -> str:
        """The URL with credentials in its query string (`?api_key=...`) referenced."""
        parts = urlsplit(self.plain(url, "url"))
        query = [
            (name, self.secret_if(value, name, f"url?{name}", f"{self.conversion.name}_{name}"))
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        encoded = urlencode(query, safe="${}")
        return urlunsplit(parts._replace(query=encoded))

    def _secret(self, value: str, key: str, variable: str) -> str:
        """Take `value` out: a `${VAR}` reference in its place; one variable never holds two values."""
        name = re.sub(r"[^A-Za-z0-9_]+", "_", variable).strip("_").upper()
        name = name if _ENV_NAME.match(name) else f"_{name}"
        if self.taken.get(name, value) != value:
            name = f"{re.sub(r'[^A-Za-z0-9]+', '_', self.conversion.name or '').upper()}_{name}"
        suffix = 2
        base = name
        while self.taken.get(name, value) != value:
            name, suffix = f"{base}_{suffix}", suffix + 1
        self.taken[name] = value
        self.conversion.secrets.append(Secret(name, value, f"{self.where}.{key}"))
        return f"${{{name}}}"

    def _variable(self, expression: str, key: str) -> str:
        """A host variable inside a value, as the gateway's `${VAR}` (or filled in)."""
        if expression in ("workspaceFolder", "workspaceRoot"):
            folder = self.path.parent
            return str(folder.parent if folder.name in (".vscode", ".cursor") else folder)
        if expression == "userHome":
            return str(Path.home())
        if expression.startswith(("env:", "input:")):
            kind, name = expression.split(":", 1)
            variable = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
            variable = variable.upper() if kind == "input" else variable
            if kind == "input":
                self.conversion.notes.append(f"{HOSTS[self.host][0]} asked for input '{name}': set {variable}")
            return f"${{{variable}}}"
        name = expression.split(":-", 1)[0]
        if _ENV_NAME.match(name):
            if ":-" in expression:
                self.conversion.notes.append(f"{key}: the default of ${{{expression}}} is dropped: set {name}")
            return f"${{{name}}}"
        raise _Skip(f"{key} uses ${{{expression}}}, which only {HOSTS[self.host][0]} can fill in")


def looks_secret(value: str) -> bool:
    """Whether a value has the shape of a credential: a known token prefix, or a long random-looking string."""
    return bool(_SECRET_SHAPE.match(value) or _RANDOM.match(value))


def _strip_jsonc(text: str) -> str:
    """JSON with comments (`//`, `/* */`) and trailing commas, as VS Code writes it, as plain JSON."""
    out: list[str] = []
    index, length, in_string = 0, len(text), False
    while index < length:
        char = text[index]
        if in_string:
            out.append(char)
            if char == "\\" and index + 1 < length:
                out.append(text[index + 1])
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("//", index):
            index = text.find("\n", index)
            index = length if index < 0 else index
            continue
        elif text.startswith("/*", index):
            end = text.find("*/", index + 2)
            index = length if end < 0 else end + 2
            continue
        elif char == "," and _TRAILING.match(text, index + 1):
            pass  # a trailing comma (comments may stand between it and the bracket)
        else:
            out.append(char)
        index += 1
    return "".join(out)
