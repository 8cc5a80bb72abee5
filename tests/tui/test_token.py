"""`mcp-aggregator tui` with a missing or refused token says what is wrong in one line and exits 2,
before the full-screen console starts; with a good token (or no gateway yet) there is no complaint."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import jwt
import pytest

from aggregator.cli.common import TOKEN_VARIABLE
from aggregator.policy.vending import mint_token
from tests.commands import run_command_in_thread
from tests.harness import AUTH, ERAS, KID, SECRET, Era, LiveGateway, serve_gateway
from tests.policies import CONSOLE_SCOPES
from tui.launch import REFUSED, token_problem
from tui.target import HttpTarget, admin_url

pytestmark = pytest.mark.anyio


def signed(claims_change: dict[str, object], secret: str = SECRET) -> str:
    # Signed at import: six hours outlast the slowest whole run (600 s expired in a 54-minute loaded one).
    _, claims = mint_token(AUTH, "admins-user", [], 6 * 3600, groups=["admins"])
    return jwt.encode({**claims, **claims_change}, secret, algorithm="HS256", headers={"kid": KID})


TOKENS: dict[str, tuple[str | None, str | None]] = {
    "missing": (None, "no token: the gateway at {url} requires one (A bearer token is required.); "
                "pass --token or set $MCP_AGGREGATOR_TOKEN"),
    "garbage": ("not-a-jwt", "the gateway at {url} rejected the token: token is not a well-formed JWT"),
    "expired": (signed({"exp": int(time.time()) - 120}), "the gateway at {url} rejected the token: token has expired"),
    "forged": (signed({}, secret="x" * 40), "the gateway at {url} rejected the token: "),
    "good": (signed({}), None),
}  # fmt: skip


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveGateway]:
    async with serve_gateway(tmp_path_factory.mktemp("tokens"), servers={}, scopes=CONSOLE_SCOPES) as gateway:
        yield gateway


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("case", list(TOKENS))
async def test_the_token_is_checked_before_the_console_starts(live: LiveGateway, case: str, era: Era) -> None:
    bearer, expected = TOKENS[case]
    problem = await token_problem(HttpTarget(live.admin_url, bearer, mode=era))
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected.format(url=live.admin_url)), problem
        assert "\n" not in problem


async def test_an_unreachable_gateway_is_for_the_console_to_show() -> None:
    assert await token_problem(HttpTarget("http://127.0.0.1:9/mcp", None)) is None


@pytest.mark.parametrize(
    ("given", "admin"),
    [
        ("http://gw:8000/mcp", "http://gw:8000/mcp/admin"),
        ("http://gw:8000/mcp/", "http://gw:8000/mcp/admin"),
        ("http://gw:8000", "http://gw:8000/mcp/admin"),
        ("http://gw:8000/", "http://gw:8000/mcp/admin"),
        ("http://gw:8000/mcp/admin", "http://gw:8000/mcp/admin"),
        ("https://proxy.example/team/gateway/mcp", "https://proxy.example/team/gateway/mcp/admin"),
        ("https://proxy.example/team/gateway/mcp/admin", "https://proxy.example/team/gateway/mcp/admin"),
        ("https://proxy.example/console", "https://proxy.example/console"),
    ],
)
def test_the_admin_endpoint_is_found_from_the_gateways_address(given: str, admin: str) -> None:
    assert admin_url(given) == admin


@pytest.mark.parametrize("case", ["missing", "garbage", "expired"])
async def test_the_command_says_it_in_one_line_and_exits_non_zero(live: LiveGateway, case: str) -> None:
    bearer, expected = TOKENS[case]
    assert expected is not None
    environment = {} if bearer is None else {TOKEN_VARIABLE: bearer}
    finished = await run_command_in_thread("tui", "--url", live.url, environment=environment)
    assert finished.returncode == REFUSED
    lines = finished.stderr.splitlines()
    assert lines == [f"mcp-aggregator tui: {expected.format(url=live.admin_url)}"], (
        lines
    )  # given /mcp, it asks /mcp/admin
    assert finished.stdout == ""
