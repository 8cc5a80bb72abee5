"""The decision cache's rules without nginx running: entry lifetimes, generations, and what is rendered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aggregator.config.settings import Settings
from aggregator.nginx import render
from aggregator.nginx.cache import CacheMarks, lifetime, rendered_generation
from aggregator.policy.principal import AuthMethod, Principal
from aggregator.policy.reload import PolicyHolder
from aggregator.policy.revocation import RevocationList
from aggregator.registry.models import ServersFile
from tests.harness import AUTH
from tests.nginx.harness import nginx_settings

NOW = 1_800_000_000.5
SCOPES = "echo/call:\n- server: echo\n  methods: [tools/call]\n  tools: [echo]\n"
SERVERS = ServersFile.model_validate(
    {"servers": {"echo": {"transport": "streamable-http", "url": "http://127.0.0.1:8101/mcp"}}}
)


@pytest.mark.parametrize(
    ("requested", "expires_at", "seconds"),
    [
        ("5", None, 5),  # no exp: the TTL nginx asked for
        ("5", int(NOW) + 3600, 5),
        ("5", int(NOW) + 7, 5),
        ("5", int(NOW) + 6, 4),  # two seconds before exp
        ("5", int(NOW) + 3, 1),
        ("5", int(NOW) + 2, 0),  # about to expire: not kept at all
        ("5", int(NOW), 0),
        ("5", int(NOW) - 20, 0),  # within the verifier's leeway, already past exp
        ("0", None, 0),
        ("-3", None, 0),
        ("five", None, 0),  # nginx would never send it; a caller reaching /auth/validate directly might
        ("", None, 0),
    ],
)
def test_an_entry_lives_the_ttl_nginx_asked_for_and_ends_before_the_token_does(
    requested: str, expires_at: int | None, seconds: int
) -> None:
    assert lifetime(requested, expires_at, NOW) == seconds


def stage(directory: Path, ttl: int = 5) -> tuple[Settings, CacheMarks]:
    (directory / "scopes.yml").write_text(SCOPES)
    settings = Settings.model_validate(
        {
            "data_dir": directory / "data",
            "scopes_file": directory / "scopes.yml",
            "auth": AUTH,
            "nginx": nginx_settings(8099, auth_cache_ttl=ttl),
        }
    )
    return settings, CacheMarks(settings.auth, PolicyHolder(settings.scopes_file), settings.data_dir / "revoked.json")


ALICE = Principal("alice", "alice", "tests", AuthMethod.GATEWAY_TOKEN, expires_at=int(NOW) + 600)


def marks_for(marks: CacheMarks, nginx: str) -> dict[str, str]:
    """What the gateway tells an nginx keying with generation `nginx` about an allow decided now."""
    _, decided_under = marks.snapshot()
    return marks.allow_headers({"x-mcp-cache-ttl": "5", "x-mcp-cache-generation": nginx}, ALICE, decided_under, NOW)


def generation_of(marks: CacheMarks) -> str:
    return marks.snapshot()[1]


def test_nginx_and_the_gateway_agree_on_the_generation_until_a_file_changes(tmp_path: Path) -> None:
    settings, marks = stage(tmp_path)
    first = rendered_generation(settings)
    assert generation_of(marks) == first
    assert marks_for(marks, first) == {"X-Accel-Expires": "5"}

    RevocationList(settings.data_dir / "revoked.json").revoke("some-jti")
    revoked = rendered_generation(settings)
    assert revoked != first
    assert generation_of(marks) == revoked  # the gateway reads the list the token checks read
    assert marks_for(marks, first) == {"X-Accel-Expires": "0"}  # an old nginx config: nothing stored

    (tmp_path / "scopes.yml").write_text(SCOPES.replace("[echo]", "[echo, add]"))
    edited = rendered_generation(settings)
    assert edited not in (first, revoked)
    assert generation_of(marks) == revoked  # the gateway has not reloaded its policy yet...
    assert marks_for(marks, edited) == {"X-Accel-Expires": "0"}  # ...so what it decides now is not stored
    holder = PolicyHolder(settings.scopes_file)
    reloaded = CacheMarks(settings.auth, holder, settings.data_dir / "revoked.json")
    assert generation_of(reloaded) == edited


def test_a_broken_scopes_file_renders_a_generation_no_gateway_has(tmp_path: Path) -> None:
    settings, marks = stage(tmp_path)
    (tmp_path / "scopes.yml").write_text("echo/call: [unclosed\n")
    assert rendered_generation(settings) != generation_of(marks)


def test_nginx_does_not_ask_for_marks_when_the_cache_is_off(tmp_path: Path) -> None:
    _, marks = stage(tmp_path)
    assert marks.allow_headers({}, ALICE, generation_of(marks), NOW) == {}


def test_an_allow_decided_before_a_change_is_not_kept_under_the_new_generation(tmp_path: Path) -> None:
    """A revocation between the snapshot and the answer: nginx, already reloaded, must not keep the allow."""
    settings, marks = stage(tmp_path)
    _, decided_under = marks.snapshot()
    RevocationList(settings.data_dir / "revoked.json").revoke("alice-jti")
    nginx = rendered_generation(settings)
    headers = {"x-mcp-cache-ttl": "5", "x-mcp-cache-generation": nginx}
    assert marks.allow_headers(headers, ALICE, decided_under, NOW) == {"X-Accel-Expires": "0"}


@pytest.mark.parametrize("ttl", [0, 5])
def test_the_auth_location_caches_only_when_a_ttl_is_set(tmp_path: Path, ttl: int) -> None:
    settings, _ = stage(tmp_path, ttl)
    text = render(settings, SERVERS).text
    auth = text[text.index("location = /_mcp_auth") : text.index("location @mcp_variables")]
    if ttl == 0:
        assert "proxy_cache off;" in auth
        assert "proxy_cache_key" not in auth
        assert 'proxy_set_header X-Mcp-Cache-Ttl "";' in auth  # a client's own header never reaches the gateway
    else:
        generation = rendered_generation(settings)
        key = re.search(r'proxy_cache_key "(.*)";', auth)
        assert key is not None
        assert key.group(1).split("\\n") == [
            generation,
            "$mcp_server",
            "$request_method",
            "$http_authorization",
            "$http_mcp_method",
            "$http_mcp_name",
            "$mcp_body_key",
        ]
        assert f"proxy_set_header X-Mcp-Cache-Ttl {ttl};" in auth
        assert f"proxy_set_header X-Mcp-Cache-Generation {generation};" in auth
