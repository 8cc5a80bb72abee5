"""The gated upstream and a gateway in front of it, shared by the tasks tests of one module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import LiveGateway, serve_upstreams
from tests.policies import ADMIN_SCOPES
from tests.tasks.upstream import Signals, serve_gated


@pytest.fixture(scope="module")
async def gated() -> AsyncIterator[tuple[str, Signals]]:
    async with serve_gated() as served:
        yield served


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory, gated: tuple[str, Signals]) -> AsyncIterator[LiveGateway]:
    """A gateway that answers every declaring caller's call with a task (`tasks.answer_within: 0`) and keeps
    results up to 1000 bytes."""
    directory: Path = tmp_path_factory.mktemp("tasks")
    async with serve_upstreams(
        directory, {"gated": gated[0]}, scopes=ADMIN_SCOPES, tasks={"answer_within": 0, "max_result_bytes": 1000}
    ) as live:
        yield live


@pytest.fixture
def signals(gated: tuple[str, Signals]) -> Signals:
    return gated[1]
