"""A bounded mcp-fuzzer campaign: no hang, no crash, no 5xx, nothing internal in any answer."""

from __future__ import annotations

import pytest

from tests.fuzz.run_fuzzer import campaign, defects

pytest.importorskip("mcp_fuzzer", reason="mcp-fuzzer is a dev dependency: pip install -e '.[dev]'")
pytestmark = [pytest.mark.anyio, pytest.mark.fuzz]


async def test_the_gateway_survives_a_bounded_fuzzing_campaign() -> None:
    result = await campaign(runs=10, runs_per_type=5, seed=20261125, deadline=45)
    assert result.cases >= 150
    assert defects(result) == []
    assert result.http_statuses.get("200", 0) > 0
