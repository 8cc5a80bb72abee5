"""docs/settings.md is generated from the settings model, is up to date, and every variable it names works.

This is the CI check: a settings field added, renamed, re-typed or re-described without
regenerating the file (`mcp-aggregator config --reference > docs/settings.md`) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from aggregator.cli.main import main
from aggregator.config.reference import render, sections
from aggregator.config.settings import LoginSettings, Settings, load_login_settings, load_settings
from tests.conftest import REPOSITORY

DOCUMENT = REPOSITORY / "docs" / "settings.md"
ROW = re.compile(
    r"^\| `(?P<key>[^`]+)` \| (?P<type>.*?) \| (?P<default>.*?) \| (?P<environment>.*?) \| (?P<text>.*) \|$"
)
KEYS = [key for section in sections() for key in section.keys]


def documented() -> dict[str, dict[str, str]]:
    """The rows of docs/settings.md, by key (login keys under `login:`)."""
    rows: dict[str, dict[str, str]] = {}
    login = False
    for line in DOCUMENT.read_text(encoding="utf-8").splitlines():
        login = login or line.startswith("## `mcp-aggregator login`")
        if match := ROW.match(line):
            rows[("login:" if login else "") + match["key"]] = match.groupdict()
    return rows


def test_docs_settings_md_is_the_reference_the_model_generates() -> None:
    regenerate = "docs/settings.md is out of date: run `mcp-aggregator config --reference > docs/settings.md`"
    assert DOCUMENT.read_text(encoding="utf-8") == render(), regenerate


def test_the_config_command_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--reference"]) == 0
    assert capsys.readouterr().out == DOCUMENT.read_text(encoding="utf-8")


@pytest.mark.parametrize("key", KEYS, ids=[key.path for key in KEYS])
def test_every_key_is_described_with_its_type_default_and_variable(key: Any) -> None:
    assert key.description and not key.description.startswith("("), f"{key.path}: add Field(description=...)"
    assert key.type and key.default
    assert re.fullmatch(r"MCP_AGGREGATOR_[A-Z0-9_]+", key.environment), key.environment


def fields(
    model: type[BaseModel], prefix: str = "", variable: str = "MCP_AGGREGATOR_"
) -> list[tuple[str, str, FieldInfo]]:
    """(key, environment variable, field) of every field a variable of its own sets, sections included."""
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += fields(annotation, f"{prefix}{name}.", f"{variable}{name.upper()}__")
        else:
            found.append((f"{prefix}{name}", f"{variable}{name.upper()}", field))
    return found


def changed(field: FieldInfo) -> tuple[str, Any] | None:
    """A valid value other than the default, as an environment string and as `model_dump(mode="json")` shows it."""
    annotation, default = field.annotation, field.default
    members = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) is Literal:
        other = next(arg for arg in get_args(annotation) if arg != default)
        return other, other
    if annotation is bool:
        return json.dumps(not default), not default
    if annotation is int:
        value = default + 1 if default < 8 or default > 10 else default - 1
        return str(value), value
    if annotation is float:
        return str(default + 1.5), default + 1.5
    if annotation is str or members == [str]:
        return "changed-by-env", "changed-by-env"
    if annotation is Path or members == [Path]:
        return "/tmp/changed-by-env", "/tmp/changed-by-env"
    if get_origin(annotation) is tuple and get_args(annotation)[0] is str:
        return '["one", "two"]', ["one", "two"]
    if get_origin(annotation) is tuple and "Network" in str(get_args(annotation)[0]):
        return '["10.20.0.0/16"]', ["10.20.0.0/16"]
    if str(members) == "[<class 'int'>, typing.Literal['auto']]":
        return "3", 3
    return None  # lists and maps of sections: set as JSON, covered by the section tests


PAIRED = {
    "nginx.tls_certificate": ("MCP_AGGREGATOR_NGINX__TLS_CERTIFICATE_KEY",),
    "nginx.tls_certificate_key": ("MCP_AGGREGATOR_NGINX__TLS_CERTIFICATE",),
}
"""Keys that are only valid together."""
GATEWAY = [(key, variable, field) for key, variable, field in fields(Settings) if changed(field) is not None]
LOGIN = [
    (f"login:{key}", variable, field)
    for key, variable, field in fields(LoginSettings, variable="MCP_AGGREGATOR_LOGIN_")
    if changed(field) is not None
]


@pytest.mark.parametrize(("key", "variable", "field"), GATEWAY + LOGIN, ids=[row[0] for row in GATEWAY + LOGIN])
def test_each_documented_variable_sets_its_key(
    key: str, variable: str, field: FieldInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable in the table is the one the settings read, and it sets exactly that key."""
    assert documented()[key]["environment"] == f"`{variable}`"
    text, expected = changed(field)  # type: ignore[misc]
    monkeypatch.setenv(variable, text)
    for partner in PAIRED.get(key, ()):
        monkeypatch.setenv(partner, "/tmp/changed-by-env")
    loaded = load_login_settings() if key.startswith("login:") else load_settings(None)
    value: Any = loaded.model_dump(mode="json")
    for part in key.removeprefix("login:").split("."):
        value = value[part]
    assert value == expected


@pytest.mark.parametrize(
    ("key", "documented_type", "default"),
    [
        ("port", "integer", "`8000`"),
        ("log_level", '"debug" or "info" or "warning" or "error"', '`"info"`'),
        ("scopes_file", "path, or null", "`null`"),
        ("admin_allowed_networks", "list of CIDR network", "`[]`"),
        ("auth.gateway_keys[].secret", "secret string, or null", "`null`"),
        (
            "auth.oidc_issuers[].algorithms",
            'list of "RS256" or "RS384" or "RS512" or "PS256" or "ES256" or "ES384"',
            '`["RS256"]`',
        ),
        ("stdio_templates.<template>.command", "string", "required"),
        ("stdio_templates.<template>.slots.<slot>.pattern", "string", "required"),
        ("nginx.worker_processes", 'integer or "auto"', '`"auto"`'),
        ("limits.max_request_bytes", "integer", "`4194304`"),
        ("login:token_file", "path", "`~/.config/mcp-aggregator/tokens.json`"),
    ],
)
def test_types_and_defaults_read_as_in_yaml(key: str, documented_type: str, default: str) -> None:
    row = documented()[key]
    assert (row["type"], row["default"]) == (documented_type, default)


@pytest.mark.parametrize(
    ("key", "environment"),
    [
        ("auth.gateway_keys[].kid", "in `MCP_AGGREGATOR_AUTH__GATEWAY_KEYS`"),
        ("auth.oidc_issuers[].jwks_uri", "in `MCP_AGGREGATOR_AUTH__OIDC_ISSUERS`"),
        ("stdio_templates.<template>.args", "in `MCP_AGGREGATOR_STDIO_TEMPLATES`"),
        ("stdio_templates.<template>.slots.<slot>.description", "in `MCP_AGGREGATOR_STDIO_TEMPLATES`"),
    ],
)
def test_items_of_lists_and_maps_name_the_variable_that_sets_them_whole(key: str, environment: str) -> None:
    assert documented()[key]["environment"] == environment


def test_a_list_of_sections_is_set_whole_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    issuers = [{"issuer": "https://id.example.com", "audiences": ["gateway"], "jwks_uri": "https://id.example.com/k"}]
    monkeypatch.setenv("MCP_AGGREGATOR_AUTH__OIDC_ISSUERS", json.dumps(issuers))
    template = {"docs": {"command": "npx", "args": ["-y", "{package}"], "slots": {"package": {"pattern": "[a-z-]+"}}}}
    monkeypatch.setenv("MCP_AGGREGATOR_STDIO_TEMPLATES", json.dumps(template))
    settings = load_settings(None)
    assert settings.auth.oidc_issuers[0].jwks_uri == "https://id.example.com/k"
    assert settings.stdio_templates["docs"].slots["package"].pattern == "[a-z-]+"


@pytest.mark.parametrize(
    "source",
    [
        "secret: {secret}",
        "secret_env: TEST_REFERENCE_KEY",
        "secret_file: {file}",
    ],
)
def test_the_settings_in_effect_are_printed_with_secrets_masked(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "a-signing-secret-of-forty-characters-0123"
    (tmp_path / "key").write_text(secret)
    monkeypatch.setenv("TEST_REFERENCE_KEY", secret)
    monkeypatch.setenv("MCP_AGGREGATOR_PORT", "9123")
    config = tmp_path / "gateway.yaml"
    key = source.format(secret=secret, file=tmp_path / "key")
    config.write_text(f"log_level: debug\nauth:\n  gateway_keys:\n    - kid: k1\n      {key}\n")
    assert main(["config", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert secret not in printed
    assert "secret: '**********'" in printed
    assert "port: 9123\n" in printed and "log_level: debug\n" in printed  # the environment over the file
