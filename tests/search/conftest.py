"""The finder's fixtures: one loaded model for the whole session, and an index synced with the test catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aggregator.search import Embedder, ToolDocument, ToolIndex
from tests.search.catalog import catalog_documents


@pytest.fixture(scope="session")
async def embedder() -> Embedder:
    """The packaged MiniLM, loaded once: every test that needs vectors shares it."""
    model = Embedder()
    await model.load()
    return model


@pytest.fixture
def catalog() -> list[ToolDocument]:
    return catalog_documents()


@pytest.fixture(scope="module")
async def shared_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> AsyncIterator[ToolIndex]:
    """An index synced with the catalog, shared by the tests of a module that only search it."""
    async with ToolIndex(tmp_path_factory.mktemp("shared") / "index", embedder) as opened:
        await opened.sync(catalog_documents())
        yield opened


@pytest.fixture
async def index(tmp_path: Path, embedder: Embedder, catalog: list[ToolDocument]) -> AsyncIterator[ToolIndex]:
    """An open index on a fresh LanceDB directory, synced with the catalog."""
    async with ToolIndex(tmp_path / "index", embedder) as opened:
        await opened.sync(catalog)
        yield opened
