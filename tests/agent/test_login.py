"""`mcp-aggregator login` against a real OpenID provider, with the test as the user's browser."""

from __future__ import annotations

import dataclasses
import json
import stat
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jwt
import pytest

from aggregator.cli.login import get_token, load_tokens, save_tokens
from aggregator.errors import LoginError
from tests.agent.browser import sign_in
from tests.agent.conftest import (
    AUDIENCE,
    CLI_CLIENT,
    PROCESS_DEADLINE,
    SIGN_IN_URL,
    USER,
    Stack,
    login_argv,
    login_through_the_browser,
    run_command,
)
from tests.conftest import REPOSITORY
from tests.policy.oidc import requires_oidc_provider
from tests.processes import run_process

pytestmark = [pytest.mark.anyio, requires_oidc_provider]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def verified(stack: Stack, token: str) -> dict[str, object]:
    """The claims of `token`, checked against the provider's published keys."""
    keys = {key["kid"]: key for key in (await stack.provider.jwks())["keys"]}
    key = jwt.PyJWK(keys[jwt.get_unverified_header(token)["kid"]])
    claims: dict[str, object] = jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE)
    return claims


async def test_login_signs_the_user_in_through_the_browser_and_keeps_the_tokens_private(
    stack: Stack, tmp_path: Path
) -> None:
    token_file = tmp_path / "config" / "mcp-aggregator" / "tokens.json"
    login = await login_through_the_browser(stack, token_file)

    assert login.status == 0, login.output
    assert login.visit.last is not None and login.visit.last.status_code == 200
    assert "Signed in" in login.visit.last.text  # the loopback listener's page, in the browser
    assert f"Signed in at {stack.provider.issuer} as {USER}; tokens saved to {token_file}" in login.output
    assert (mode_of(token_file), mode_of(token_file.parent)) == (0o600, 0o700)
    tokens = load_tokens(token_file)
    assert (tokens.issuer, tokens.client_id, tokens.resource) == (stack.provider.issuer, CLI_CLIENT, AUDIENCE)
    assert tokens.refresh_token and tokens.expires_at and tokens.expires_at > time.time() + 200
    claims = await verified(stack, tokens.access_token)
    assert (claims["sub"], claims["client_id"], claims["groups"]) == (USER, CLI_CLIENT, ["weather-users"])
    for secret in (tokens.access_token, tokens.refresh_token):
        assert secret not in login.output


async def test_refresh_rotates_the_tokens_and_get_token_refreshes_an_expired_one(stack: Stack, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.json"
    assert (await login_through_the_browser(stack, token_file)).status == 0
    first = load_tokens(token_file)

    refreshed = await run_command(login_argv(stack, token_file, "--refresh"))
    assert refreshed.status == 0, refreshed.stderr
    assert f"Refreshed the tokens at {stack.provider.issuer} as {USER}" in refreshed.stderr
    second = load_tokens(token_file)
    assert second.access_token != first.access_token
    assert second.refresh_token not in (None, first.refresh_token)  # public clients' refresh tokens rotate
    assert mode_of(token_file) == 0o600
    assert (await verified(stack, second.access_token))["sub"] == USER
    assert second.access_token not in refreshed.stdout + refreshed.stderr

    assert await get_token(token_file) == second.access_token  # still fresh: no request
    save_tokens(token_file, dataclasses.replace(second, expires_at=time.time() - 1))
    third = await get_token(token_file)
    assert third not in (first.access_token, second.access_token)
    assert load_tokens(token_file).access_token == third
    assert (await verified(stack, third))["sub"] == USER


async def test_a_redirect_with_a_forged_state_fails_the_login(stack: Stack, tmp_path: Path) -> None:
    def forged(location: str) -> str:
        parts = urlsplit(location)
        query = dict(parse_qsl(parts.query))
        return urlunsplit(parts._replace(query=urlencode({**query, "state": "forged"})))

    token_file = tmp_path / "tokens.json"
    login = await login_through_the_browser(stack, token_file, redirect=forged)
    assert login.status == 1
    assert "another login's state" in login.output
    assert login.visit.last is not None and login.visit.last.status_code == 400
    assert not token_file.exists()


async def test_a_denied_consent_fails_the_login(stack: Stack, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.json"
    login = await login_through_the_browser(stack, token_file, consent="Deny")
    assert login.status == 1
    assert "refused the sign-in: access_denied" in login.output
    assert not token_file.exists()


async def test_the_provider_refuses_a_wrong_password_and_shows_the_form_again(stack: Stack, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.json"
    async with run_process(login_argv(stack, token_file), cwd=REPOSITORY) as process:
        match = SIGN_IN_URL.match(await process.wait_for(SIGN_IN_URL, PROCESS_DEADLINE))
        assert match is not None
        visit = await sign_in(match.group(1), username=USER, password="wrong")
    assert visit.last is not None and visit.last.status_code == 401
    assert "Invalid username or password." in visit.last.text
    assert not token_file.exists()


def test_a_token_file_other_users_can_read_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.json"
    with pytest.raises(LoginError, match=r"No tokens at .*tokens\.json; run `mcp-aggregator login` first\."):
        load_tokens(token_file)
    token_file.write_text(json.dumps({"issuer": "x"}))
    token_file.chmod(0o644)
    with pytest.raises(LoginError, match=r"readable by other users \(mode 644\); run chmod 600"):
        load_tokens(token_file)
    token_file.chmod(0o600)
    with pytest.raises(LoginError, match="is not a token file written by `mcp-aggregator login`"):
        load_tokens(token_file)
