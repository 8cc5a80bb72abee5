"""Semantic tool discovery for `intelligent_tool_finder`: documents, the embedder and the LanceDB tool index."""

from aggregator.search.documents import ToolDocument
from aggregator.search.embedder import Embedder
from aggregator.search.errors import DuplicateToolError, EmbedderUnavailableError, IndexClosedError, SearchError
from aggregator.search.index import ToolIndex
from aggregator.search.ranking import Ranking
from aggregator.search.results import SearchHit, SearchMode, SearchResult, SyncReport

__all__ = [
    "DuplicateToolError",
    "Embedder",
    "EmbedderUnavailableError",
    "IndexClosedError",
    "Ranking",
    "SearchError",
    "SearchHit",
    "SearchMode",
    "SearchResult",
    "SyncReport",
    "ToolDocument",
    "ToolIndex",
]
